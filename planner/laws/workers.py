"""Fitting many (study, metric) groups at once: one spawned worker process per core.

A group's fit is CPU-bound numpy with its own fixed seeds, so groups spread over processes
give the same results in the same order as one process, only sooner. ``fit`` and
``backtest`` both go through :func:`map_groups`.

A worker exits as soon as the process that started it is gone, however it went: a
``kill -9`` of ``annealplan fit`` skips the pool's own shutdown, and the workers would
otherwise wait on their task pipe forever (each holding the laws' imports and a group's
data).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

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


def worker_count(jobs: int, tasks: int) -> int:
    """The processes for ``tasks`` groups: ``jobs`` (>= 0), or one per core when it is 0."""
    return max(1, min(jobs or available_cores(), tasks))


def _exit_with_parent() -> None:
    """A worker's initializer: exit the moment the parent process is gone.

    A spawned worker holds the read end of a pipe whose only write end is the parent's
    (multiprocessing's parent sentinel); the kernel closes it when the parent dies, however
    it dies, and the sentinel turns readable. A daemon thread waits on it. This works
    whichever thread of the parent started the pool, unlike ``PR_SET_PDEATHSIG``, which
    fires when the *thread* that forked exits.
    """
    import multiprocessing

    parent = multiprocessing.parent_process()
    if parent is None:  # not a multiprocessing child (a test calling it directly)
        return

    def watch() -> None:
        parent.join()  # returns once the sentinel is readable: the parent has exited
        os._exit(1)  # nothing to save: only the parent writes results

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def map_groups(fn: Callable[[T], R], items: Sequence[T], workers: int) -> Iterator[R]:
    """``fn(item)`` for each item, in order, from ``workers`` processes (1: in this one).

    ``fn`` must be a module-level function and items and results picklable.
    """
    if workers <= 1 or len(items) <= 1:
        for item in items:
            yield fn(item)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # spawn, not fork: the parent may hold threads (the store's, BLAS's, a UI's) a fork
    # would copy mid-flight; a spawned worker imports the laws once, then takes group
    # after group
    ctx = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_exit_with_parent)
    try:
        futures = [pool.submit(fn, item) for item in items]
        for f in futures:
            yield f.result()
    finally:
        # on an error (or Ctrl-C) the queued groups are dropped and the running ones
        # awaited, so no worker outlives the call
        pool.shutdown(wait=True, cancel_futures=True)
