"""Backtests: replay a runs table as if only its small runs existed, and score decisions."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence

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
    from planner.laws.fit import blas_limit

    blas_limit()  # so does a bad ANNEALPLAN_BLAS_THREADS, before workers are spawned
    if jobs < 0:
        raise FitError(f"--jobs must be 0 (one per core) or a positive count, not {jobs}.")
    targets = build_targets(observations, fraction, metrics=metrics, overrides=overrides)
    if not targets:
        raise FitError(
            "Nothing to backtest: no (study, metric) has 2 sources with 3 distinct compute "
            f"values at or below {fraction}·x_T. Add runs at small compute or raise --fraction."
        )
    workers = min(jobs or available_cores(), len(targets))
    scores = []
    for score in _scores(method, targets, workers):
        scores.append(score)
        if progress is not None:
            progress(len(scores), len(targets))
    return aggregate(fraction, method, scores)


#: memory a worker process may take (the laws' imports plus one group's bootstrap)
WORKER_MEMORY = 1 << 30


def available_cores() -> int:
    """The cores this process may run on, and no more workers than free memory holds
    (one per GiB: a many-core machine short of memory should not swap)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on every platform
        cores = os.cpu_count() or 1
    free = _available_memory()
    return cores if free is None else max(1, min(cores, free // WORKER_MEMORY))


def _available_memory() -> int | None:
    """Bytes of memory available to new processes (page cache counts), None if unknown."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:  # elsewhere: the free pages alone
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def score_group(method: str, target: Target) -> GroupScore:
    """One group fitted by ``method`` and scored (a worker process's unit of work)."""
    preds, law = get_method(method)(target)
    return score_target(target, preds, law)


def _scores(method: str, targets: Sequence[Target], workers: int) -> Iterator[GroupScore]:
    """Group scores in the order of ``targets``, from ``workers`` processes (1: in this one)."""
    if workers <= 1:
        for t in targets:
            yield score_group(method, t)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # spawn, not fork: the parent may hold threads (the store's, BLAS's) a fork would copy
    # mid-flight; a spawned worker imports the laws once and then takes group after group
    ctx = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx)
    try:
        futures = [pool.submit(score_group, method, t) for t in targets]
        for f in futures:
            yield f.result()
    finally:
        # on an error (or Ctrl-C) the queued groups are dropped and the running ones
        # awaited, so no worker outlives the call
        pool.shutdown(wait=True, cancel_futures=True)


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
