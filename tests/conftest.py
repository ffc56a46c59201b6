"""Suite-wide set-up: test processes that run side by side (``pytest -n``) do not share cores.

Each test process gets its own slice of the machine's cores (its CPU affinity, inherited by
every daemon, worker and DeepSpeed rank it starts). The daemon sizes a job's threads from the
cores it may use, so two processes' jobs never put more OpenMP threads on a core than it has.
Oversubscribed OpenMP threads spin waiting for each other: on 2 cores the suite needed a third
more CPU time, enough on a slow day to turn a wait for training progress into a timeout.
"""

from __future__ import annotations

import os


def _own_cores() -> None:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 1)
    if not worker.startswith("gw") or count < 2 or not hasattr(os, "sched_setaffinity"):
        return
    index = int(worker.removeprefix("gw"))
    cores = sorted(os.sched_getaffinity(0))
    share = cores[index::count] if len(cores) >= count else [cores[index % len(cores)]]
    os.sched_setaffinity(0, share)
    os.environ["OMP_NUM_THREADS"] = str(len(share))
    os.environ["MKL_NUM_THREADS"] = str(len(share))


# before any test module imports torch: its thread pool is sized when it starts
_own_cores()
