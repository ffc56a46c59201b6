from __future__ import annotations

import math

import pytest

from planner.errors import UnitError
from planner.units import (
    Rates,
    Unit,
    convert,
    format_quantity,
    parse_quantity,
    parse_tokens,
    training_flops,
)


@pytest.mark.parametrize(
    ("text", "value", "unit"),
    [
        ("2000gpuh", 2000.0, Unit.GPU_HOURS),
        ("2000 GPU-hours", 2000.0, Unit.GPU_HOURS),
        ("1.5e21flop", 1.5e21, Unit.FLOPS),
        ("1.5e21 FLOPs", 1.5e21, Unit.FLOPS),
        ("$30k", 30_000.0, Unit.USD),
        ("$1,250", 1250.0, Unit.USD),
        ("12.5usd", 12.5, Unit.USD),
        ("40B", 40e9, Unit.TOKENS),
        ("40B tokens", 40e9, Unit.TOKENS),
        ("300M", 300e6, Unit.TOKENS),
        ("2.5e9 tokens", 2.5e9, Unit.TOKENS),
        ("3k gpuh", 3000.0, Unit.GPU_HOURS),
    ],
)
def test_parse_quantity(text, value, unit):
    q = parse_quantity(text)
    assert q.unit is unit
    assert math.isclose(q.value, value)


@pytest.mark.parametrize("text", ["", "abc", "12 parsecs", "-5gpuh", "$5 flops", "inf flop", "12"])
def test_parse_quantity_rejects_with_a_hint(text):
    with pytest.raises(UnitError) as e:
        parse_quantity(text)
    assert str(e.value)


def test_parse_tokens_defaults_and_rejects_costs():
    assert parse_tokens("2B") == 2e9
    assert parse_tokens(1000) == 1000.0
    assert parse_tokens("5000") == 5000.0
    with pytest.raises(UnitError, match="token count"):
        parse_tokens("$5")


def test_training_flops_is_6nd():
    assert training_flops(135e6, 2e9) == 6 * 135e6 * 2e9


def test_convert_round_trips_through_rates():
    r = Rates(flops_per_gpu_hour=1e18, usd_per_gpu_hour=2.0)
    assert convert(10, Unit.GPU_HOURS, Unit.USD, r) == 20.0
    assert convert(2e18, Unit.FLOPS, Unit.GPU_HOURS, r) == 2.0
    assert math.isclose(
        convert(convert(7.0, Unit.USD, Unit.FLOPS, r), Unit.FLOPS, Unit.USD, r), 7.0
    )
    with pytest.raises(UnitError):
        convert(1, Unit.TOKENS, Unit.USD, r)
    with pytest.raises(UnitError):
        Rates(flops_per_gpu_hour=0)


def test_format_quantity():
    assert format_quantity(30_000, Unit.USD) == "$30k"
    assert format_quantity(40e9, Unit.TOKENS) == "40B tokens"
    assert "GPU-h" in format_quantity(2000, Unit.GPU_HOURS)
