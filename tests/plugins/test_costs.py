"""Cost models: the sympy expression and the numeric cost agree, and so do derivatives."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import sympy

from planner.errors import ConfigError
from planner.units import Rates, Unit, convert
from plugins.manager import load_registry

REGISTRY = load_registry(entry_points=False)

CASES = [
    ("linear", {"per_token": 2e-6, "fixed": 500.0}),
    ("linear", {"per_token": 0.5, "unit": "gpu_hours"}),
    ("generation", {"generator_params": 7e9}),
    (
        "generation",
        {
            "generator_params": 1.35e8,
            "prompt_tokens_per_output_token": 2.5,
            "generator_tokens_per_token": 1.3,
            "unit": "usd",
            "usd_per_gpu_hour": 3.0,
        },
    ),
    ("filtering", {"scan_cost_per_token": 2.7e8, "threshold": 0.8, "sharpness": 2.0}),
    (
        "filtering",
        {
            "scan_cost_per_token": 2.7e8,
            "threshold": 0.5,
            "keep_rate": 0.1,
            "unit": "gpu_hours",
            "fixed": 3.0,
        },
    ),
]
TOKENS = np.array([0.0, 1e3, 3.3e6, 2e9, 7.5e11])


@pytest.mark.parametrize(("name", "params"), CASES)
def test_expr_and_cost_agree(name, params):
    model = REGISTRY.build_cost_model(name, params)
    n = sympy.Symbol("n", nonnegative=True)
    from_expr = sympy.lambdify(n, model.expr(n), "numpy")
    np.testing.assert_allclose(
        np.broadcast_to(from_expr(TOKENS), TOKENS.shape), model.cost(TOKENS), rtol=1e-12
    )


@pytest.mark.parametrize(("name", "params"), CASES)
def test_derivative_matches_finite_differences(name, params):
    model = REGISTRY.build_cost_model(name, params)
    n = sympy.Symbol("n", nonnegative=True)
    derivative = sympy.lambdify(n, sympy.diff(model.expr(n), n), "numpy")
    for x in (1e6, 4e9):
        h = x * 1e-4
        fd = (model.cost(x + h) - model.cost(x - h)) / (2 * h)
        assert float(derivative(x)) == pytest.approx(float(fd), rel=1e-6)


def test_generation_is_two_n_times_processed_tokens():
    model = REGISTRY.build_cost_model(
        "generation", {"generator_params": 1e9, "prompt_tokens_per_output_token": 3.0}
    )
    assert model.unit is Unit.FLOPS
    assert float(model.cost(1e6)) == pytest.approx(2 * 1e9 * (1e6 + 3e6))
    rates = Rates(flops_per_gpu_hour=1e18, usd_per_gpu_hour=2.0)
    usd = REGISTRY.build_cost_model(
        "generation",
        {
            "generator_params": 1e9,
            "prompt_tokens_per_output_token": 3.0,
            "unit": "usd",
            "flops_per_gpu_hour": 1e18,
            "usd_per_gpu_hour": 2.0,
        },
    )
    assert float(usd.cost(1e6)) == pytest.approx(convert(8e15, Unit.FLOPS, Unit.USD, rates))


def test_filtering_cost_per_kept_token_grows_as_the_threshold_tightens():
    per_kept = [
        float(
            REGISTRY.build_cost_model(
                "filtering", {"scan_cost_per_token": 1.0, "threshold": t, "sharpness": 1.5}
            ).cost(1.0)
        )
        for t in (0.0, 0.3, 0.6, 0.9, 0.99)
    ]
    assert per_kept[0] == pytest.approx(1.0)
    assert all(b > a for a, b in itertools.pairwise(per_kept))
    measured = REGISTRY.build_cost_model(
        "filtering", {"scan_cost_per_token": 1.0, "threshold": 0.9, "keep_rate": 0.25}
    )
    assert measured.scanned_per_kept() == pytest.approx(4.0)


def test_describe_states_the_formula_and_unit():
    text = REGISTRY.build_cost_model("linear", {"per_token": 1e-6, "fixed": 100}).describe()
    assert "per_token·n + fixed" in text and "[usd]" in text


def test_bad_parameters_are_reported_by_field():
    with pytest.raises(ConfigError, match=r"generator_params: Input should be greater than 0"):
        REGISTRY.build_cost_model("generation", {"generator_params": -1})
    with pytest.raises(ConfigError, match=r"threshold: Input should be less than 1"):
        REGISTRY.build_cost_model("filtering", {"scan_cost_per_token": 1, "threshold": 1.0})
    with pytest.raises(ConfigError, match=r"unit must be flops, gpu_hours or usd"):
        REGISTRY.build_cost_model("generation", {"generator_params": 1, "unit": "tokens"})


@pytest.mark.parametrize(
    ("kind", "config"),
    [
        ("synthetic", {"generator": "g", "seeds": ["s.jsonl"]}),
        ("filtered", {"pool": ["p.jsonl"], "labelled": ["l.jsonl"]}),
    ],
)
def test_kinds_that_price_compute_share_the_cost_unit_check_and_rates(kind, config):
    from plugins.costs.base import PricedConfig, rates_or_defaults

    k = REGISTRY.source_kind(kind)
    with pytest.raises(ConfigError, match="cost_unit: Value error, cost_unit must be flops"):
        k.parse_config({**config, "cost_unit": "tokens"})
    parsed = k.parse_config({**config, "cost_unit": "usd", "usd_per_gpu_hour": 3.0})
    assert isinstance(parsed, PricedConfig)
    rates = rates_or_defaults(None, 3.0)
    assert parsed.rates() == rates and rates.flops_per_gpu_hour == Rates().flops_per_gpu_hour
    assert parsed.explicit_rates() == {"usd_per_gpu_hour": 3.0}
    assert parsed.price_flops(1e18) == convert(1e18, Unit.FLOPS, Unit.USD, rates)
