"""Quantities annealplan reasons about (defined in the plugin contract, re-exported here).

Tokens, FLOPs, GPU-hours and US dollars: parsing ``"2000gpuh"`` or ``"40B"``, the training
FLOPs 6·N·D, and conversions through explicit :class:`Rates`. The code lives in
:mod:`plugins.units` so that cost models and source kinds can use it without importing the
planner; the planner's code imports it from here.
"""

from __future__ import annotations

from plugins.units import (
    Quantity,
    Rates,
    Unit,
    convert,
    format_quantity,
    parse_quantity,
    parse_tokens,
    training_flops,
)

__all__ = [
    "Quantity",
    "Rates",
    "Unit",
    "convert",
    "format_quantity",
    "parse_quantity",
    "parse_tokens",
    "training_flops",
]
