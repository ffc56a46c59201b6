"""Backtests: replay a runs table as if only its small runs existed, and score decisions."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import partial

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
from planner.laws.workers import available_cores, map_groups, worker_count


def run_backtest(
    observations: Sequence[Observation],
    *,
    fraction: float = DEFAULT_FRACTION,
    method: str = DEFAULT_METHOD,
    metrics: Sequence[str] | None = None,
    overrides: Mapping[str, bool] | None = None,
    jobs: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> BacktestResult:
    """Run the backtest protocol with one method.

    Args:
        observations: the runs table, flattened.
        fraction: F; fit on runs with compute <= F·x_T.
        method: a name in :data:`METHODS`.
        metrics: only these metrics (all when None).
        overrides: metric → lower-is-better, winning over the name rule.
        jobs: worker processes the (study, metric) groups are spread over; 0 means one
            per available core (see :func:`available_cores`). Each group is fitted with its
            own fixed seeds, so the result does not depend on ``jobs``.
        progress: called with (groups done, groups) after each group.

    Raises:
        FitError: unknown method or metric, bad fraction, bad ``jobs``, or nothing to
            backtest.
    """
    from planner.errors import FitError

    get_method(method)  # an unknown name fails before any work
    from planner.laws.blas import blas_limit

    blas_limit()  # so does a bad ANNEALPLAN_BLAS_THREADS, before workers are spawned
    if jobs < 0:
        raise FitError(f"--jobs must be 0 (one per core) or a positive count, not {jobs}.")
    targets = build_targets(observations, fraction, metrics=metrics, overrides=overrides)
    if not targets:
        raise FitError(
            "Nothing to backtest: no (study, metric) has 2 sources with 3 distinct compute "
            f"values at or below {fraction}·x_T. Add runs at small compute or raise --fraction."
        )
    workers = worker_count(jobs, len(targets))
    scores = []
    for score in map_groups(partial(score_group, method), targets, workers):
        scores.append(score)
        if progress is not None:
            progress(len(scores), len(targets))
    return aggregate(fraction, method, scores)


def score_group(method: str, target: Target) -> GroupScore:
    """One group fitted by ``method`` and scored (a worker process's unit of work)."""
    preds, law = get_method(method)(target)
    return score_target(target, preds, law)


__all__ = [
    "DEFAULT_FRACTION",
    "DEFAULT_METHOD",
    "METHODS",
    "BacktestResult",
    "GroupScore",
    "Prediction",
    "Target",
    "aggregate",
    "available_cores",
    "build_targets",
    "run_backtest",
    "score_group",
    "score_target",
]
