"""Backtests: replay a runs table as if only its small runs existed, and score decisions."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import partial

from planner.backtest.methods import DEFAULT_METHOD, METHODS, TableMethod, get_method
from planner.backtest.protocol import (
    DEFAULT_FRACTION,
    BacktestResult,
    GroupPrediction,
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
    proxies: Mapping[str, str] | None = None,
    chance: Mapping[str, float] | None = None,
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
        proxies: metric → its continuous proxy metric (resolved names).
        chance: metric → its chance level (wins over a ``chance`` column).

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
    targets = build_targets(
        observations,
        fraction,
        metrics=metrics,
        overrides=overrides,
        proxies=proxies,
        chance=chance,
    )
    if not targets:
        raise FitError(
            "Nothing to backtest: no (study, metric) has 2 sources with 3 distinct compute "
            f"values at or below {fraction}·x_T. Add runs at small compute or raise --fraction."
        )
    workers = worker_count(jobs, len(targets))
    chosen = get_method(method)
    if isinstance(chosen, TableMethod):
        # the table chooses from every group's nested backtest, then predicts each group
        evidence = []
        for ev in map_groups(partial(gather_group, method), targets, workers):
            evidence.append(ev)
            if progress is not None:
                progress(len(evidence), len(targets))
        table = chosen.estimate(evidence)
        scores = [
            score_target(t, chosen.predict(t, ev, table))
            for t, ev in zip(targets, evidence, strict=True)
        ]
        return aggregate(fraction, method, scores, table.summary())
    scores = []
    for score in map_groups(partial(score_group, method), targets, workers):
        scores.append(score)
        if progress is not None:
            progress(len(scores), len(targets))
    return aggregate(fraction, method, scores)


def score_group(method: str, target: Target) -> GroupScore:
    """One group fitted by ``method`` and scored (a worker process's unit of work)."""
    return score_target(target, get_method(method)(target))


def gather_group(method: str, target: Target):
    """One group's evidence for a table method (a worker process's unit of work)."""
    return get_method(method).gather(target)


__all__ = [
    "DEFAULT_FRACTION",
    "DEFAULT_METHOD",
    "METHODS",
    "BacktestResult",
    "GroupPrediction",
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
