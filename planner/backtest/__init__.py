"""Backtests: replay a runs table as if only its small runs existed, and score decisions."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from planner.backtest.methods import DEFAULT_METHOD, METHODS, get_method
from planner.backtest.protocol import (
    DEFAULT_FRACTION,
    BacktestResult,
    GroupScore,
    Prediction,
    Target,
    aggregate,
    build_targets,
    score_target,
)
from planner.domain import Observation


def run_backtest(
    observations: Sequence[Observation],
    *,
    fraction: float = DEFAULT_FRACTION,
    method: str = DEFAULT_METHOD,
    metrics: Sequence[str] | None = None,
    overrides: Mapping[str, bool] | None = None,
) -> BacktestResult:
    """Run the backtest protocol with one method.

    Args:
        observations: the runs table, flattened.
        fraction: F; fit on runs with compute <= F·x_T.
        method: a name in :data:`METHODS`.
        metrics: only these metrics (all when None).
        overrides: metric → lower-is-better, winning over the name rule.

    Raises:
        FitError: unknown method or metric, bad fraction, or nothing to backtest.
    """
    from planner.errors import FitError

    fn = get_method(method)
    targets = build_targets(observations, fraction, metrics=metrics, overrides=overrides)
    if not targets:
        raise FitError(
            "Nothing to backtest: no (study, metric) has 2 sources with 3 distinct compute "
            f"values at or below {fraction}·x_T. Add runs at small compute or raise --fraction."
        )
    scores = []
    for t in targets:
        preds, law = fn(t)
        scores.append(score_target(t, preds, law))
    return aggregate(fraction, method, scores)


__all__ = [
    "DEFAULT_FRACTION",
    "DEFAULT_METHOD",
    "METHODS",
    "BacktestResult",
    "GroupScore",
    "Prediction",
    "Target",
    "aggregate",
    "build_targets",
    "run_backtest",
    "score_target",
]
