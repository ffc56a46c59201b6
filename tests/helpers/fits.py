"""Fitted laws for CLI tests: a log-linear law with bootstrap rows, as ``fit`` stores it."""

from __future__ import annotations

import numpy as np

from planner.domain import LawFit


def loglinear_fit(source: str, a: float, b: float, rng: np.random.Generator) -> LawFit:
    """``a + b·log(x)`` of ``acc`` for ``source`` (x in units of 1e9 tokens, fitted up to
    3e9), with 80 bootstrap rows around (a, b)."""
    boot = np.column_stack([rng.normal(a, 0.005, 80), rng.normal(b, 0.002, 80)])
    return LawFit(
        study="default",
        metric="acc",
        source=source,
        family="loglinear",
        method="test",
        params={"a": a, "b": b},
        x_ref=1e9,
        boot=boot,
        x_max=3e9,
        n_points=4,
    )
