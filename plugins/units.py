"""Quantities annealplan reasons about: tokens, FLOPs, GPU-hours and US dollars.

Users type quantities as strings (``"2000gpuh"``, ``"1.5e21flop"``, ``"$30k"``,
``"40B"``); this module turns them into floats in a canonical unit and back.
Conversions between compute and money go through explicit :class:`Rates`, never
a hidden constant.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from enum import StrEnum

from plugins.errors import UnitError


class Unit(StrEnum):
    """Canonical units. Values are the spellings used in files and the CLI."""

    TOKENS = "tokens"
    FLOPS = "flops"
    GPU_HOURS = "gpu_hours"
    USD = "usd"


_SUFFIX = {"": 1.0, "k": 1e3, "m": 1e6, "b": 1e9, "g": 1e9, "t": 1e12, "p": 1e15}

_UNIT_WORDS: dict[str, Unit] = {
    "tok": Unit.TOKENS,
    "toks": Unit.TOKENS,
    "token": Unit.TOKENS,
    "tokens": Unit.TOKENS,
    "flop": Unit.FLOPS,
    "flops": Unit.FLOPS,
    "gpuh": Unit.GPU_HOURS,
    "gpu-h": Unit.GPU_HOURS,
    "gpuhr": Unit.GPU_HOURS,
    "gpuhrs": Unit.GPU_HOURS,
    "gpu-hours": Unit.GPU_HOURS,
    "gpu_hours": Unit.GPU_HOURS,
    "gpuhours": Unit.GPU_HOURS,
    "usd": Unit.USD,
    "$": Unit.USD,
    "dollars": Unit.USD,
}

_QUANTITY = re.compile(
    r"""^\s*
    (?P<dollar>\$)?\s*
    (?P<num>[+-]?(?:\d+(?:[._]\d+)*|\.\d+)(?:e[+-]?\d+)?)\s*
    (?P<suffix>[kmbgtp](?![a-z]))?\s*
    (?P<unit>[a-z$_\-]*)\s*$""",
    re.IGNORECASE | re.VERBOSE,
)


@dataclass(frozen=True, slots=True)
class Quantity:
    """A number in a canonical unit."""

    value: float
    unit: Unit

    def __str__(self) -> str:
        return format_quantity(self.value, self.unit)


def parse_quantity(text: str | float | int, *, default_unit: Unit | None = None) -> Quantity:
    """Parse a user string such as ``"2000gpuh"``, ``"1.5e21flop"``, ``"$30k"`` or ``"40B"``.

    Args:
        text: the string typed by a user (a bare number is allowed with ``default_unit``).
        default_unit: the unit of a string that names none (``"40B"`` → tokens).

    Returns:
        The quantity in its canonical unit.

    Raises:
        UnitError: the string is not a quantity, names no unit and no default was given,
            or is negative / not finite.
    """
    if isinstance(text, int | float):
        if default_unit is None:
            raise UnitError(f"{text!r} has no unit; write e.g. 2000gpuh, 1.5e21flop, $30k or 40B")
        return _checked(float(text), default_unit, str(text))
    match = _QUANTITY.match(text.replace(",", ""))
    if not match:
        raise UnitError(
            f"cannot read {text!r} as a quantity; write e.g. 2000gpuh, 1.5e21flop, $30k or 40B tokens"
        )
    number = float(match["num"].replace("_", ""))
    suffix = (match["suffix"] or "").lower()
    word = (match["unit"] or "").lower()
    if match["dollar"]:
        if word and _UNIT_WORDS.get(word) is not Unit.USD:
            raise UnitError(f"{text!r} starts with $ but ends with unit {word!r}")
        unit = Unit.USD
    elif word:
        if word not in _UNIT_WORDS:
            # "40B" parses the B as a suffix; "40Btok" as suffix + unit. Anything else is unknown.
            known = ", ".join(sorted({u.value for u in Unit}))
            raise UnitError(f"unknown unit {word!r} in {text!r}; known units: {known}")
        unit = _UNIT_WORDS[word]
    elif default_unit is not None:
        unit = default_unit
    elif suffix:
        unit = Unit.TOKENS  # "40B" is how people write token counts
    else:
        raise UnitError(f"{text!r} has no unit; write e.g. 2000gpuh, 1.5e21flop, $30k or 40B")
    return _checked(number * _SUFFIX[suffix], unit, text)


def parse_tokens(text: str | float | int) -> float:
    """Parse a token count (``"40B"``, ``"2.5e9"``, ``"300M tokens"``)."""
    q = parse_quantity(text, default_unit=Unit.TOKENS)
    if q.unit is not Unit.TOKENS:
        raise UnitError(
            f"{text!r} is a {q.unit.value} amount; a token count was expected (e.g. 40B)"
        )
    return q.value


def _checked(value: float, unit: Unit, text: str) -> Quantity:
    if not math.isfinite(value) or value < 0:
        raise UnitError(f"{text!r} must be a finite, non-negative amount")
    return Quantity(value, unit)


def training_flops(params: float, tokens: float) -> float:
    """Training compute of a dense transformer: 6·N·D FLOPs."""
    return 6.0 * float(params) * float(tokens)


@dataclass(frozen=True, slots=True)
class Rates:
    """How compute and money convert.

    Attributes:
        flops_per_gpu_hour: useful FLOPs one GPU delivers in an hour (peak × MFU × 3600).
        usd_per_gpu_hour: what one GPU-hour costs.
    """

    flops_per_gpu_hour: float = 989e12 * 0.40 * 3600.0  # H100 bf16 dense peak at 40% MFU
    usd_per_gpu_hour: float = 2.50

    def __post_init__(self) -> None:
        if not (self.flops_per_gpu_hour > 0 and self.usd_per_gpu_hour > 0):
            raise UnitError("rates must be positive: flops_per_gpu_hour and usd_per_gpu_hour")

    def per_gpu_hour(self, unit: Unit) -> float:
        """How many ``unit`` one GPU-hour is worth."""
        if unit is Unit.GPU_HOURS:
            return 1.0
        if unit is Unit.FLOPS:
            return self.flops_per_gpu_hour
        if unit is Unit.USD:
            return self.usd_per_gpu_hour
        raise UnitError(f"{unit.value} is not a cost unit; use flops, gpu_hours or usd")


def convert(value: float, src: Unit, dst: Unit, rates: Rates | None = None) -> float:
    """Convert a cost between FLOPs, GPU-hours and USD."""
    if src is dst:
        return float(value)
    r = rates or Rates()
    return float(value) / r.per_gpu_hour(src) * r.per_gpu_hour(dst)


def format_quantity(value: float, unit: Unit) -> str:
    """Render a quantity the way a person would write it (``"$30k"``, ``"2.0e+21 FLOPs"``)."""
    if unit is Unit.USD:
        return "$" + _si(value)
    if unit is Unit.FLOPS:
        return f"{value:.3g} FLOPs"
    if unit is Unit.GPU_HOURS:
        return f"{value:,.4g} GPU-h"
    return _si(value) + " tokens"


def _si(value: float) -> str:
    for factor, letter in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.3g}{letter}"
    return f"{value:.3g}"
