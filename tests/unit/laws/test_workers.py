"""The fit/backtest worker pool: its processes never outlive the process that started them."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil

from planner.domain import Metric, Run
from planner.store import RunsTable, open_store


def _store_of_many_groups(path: Path) -> None:
    """5 metrics × 30 sources × 8 computes: a fit that keeps two workers busy for seconds."""
    rng = np.random.default_rng(0)
    xs = np.logspace(17, 21, 8)
    runs, metrics = [], []
    for s in range(30):
        for i, x in enumerate(xs):
            rid = f"src{s:02d}-{i}"
            runs.append(Run(rid, f"src{s:02d}", float(x), study="ladder"))
            for m in range(5):
                value = 1 - 0.5 * (0.3 + rng.uniform(0.5, 1.5) * (x / 1e17) ** -0.2)
                metrics.append(Metric(rid, f"task{m}/acc", value + rng.normal(0, 0.01)))
    store = open_store(path)
    try:
        store.import_runs(RunsTable(tuple(runs), tuple(metrics), {}))
    finally:
        store.close()


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_kill_9_of_fit_leaves_no_worker_behind(tmp_path: Path):
    """``kill -9`` of a real ``annealplan fit --jobs 2`` mid-fit: every process it started
    (the two spawned workers and multiprocessing's resource tracker) is gone soon after,
    checked by pid."""
    db = tmp_path / "s.duckdb"
    _store_of_many_groups(db)
    exe = Path(sys.executable).with_name("annealplan")
    fit = subprocess.Popen(
        [str(exe), "--db", str(db), "fit", "--jobs", "2"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=tmp_path,
    )
    children: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert fit.poll() is None, "the fit ended before it could be killed"
            children = psutil.Process(fit.pid).children(recursive=True)
            workers = [p for p in children if "spawn_main" in " ".join(p.cmdline())]
            # both workers have started fitting (the laws imported, a group taken)
            if len(workers) == 2 and all(p.cpu_times().user > 1.0 for p in workers):
                break
            time.sleep(0.2)
        else:
            raise AssertionError("the fit never had two busy workers")
        children = psutil.Process(fit.pid).children(recursive=True)
        fit.send_signal(signal.SIGKILL)
        fit.wait(timeout=30)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(_alive(p.pid) for p in children):
            time.sleep(0.2)
        left = [(p.pid, " ".join(p.cmdline())) for p in children if _alive(p.pid)]
        assert not left, f"processes outlived the killed fit: {left}"
    finally:
        if fit.poll() is None:
            fit.kill()
            fit.wait(timeout=30)
        for p in children:  # a failing run must not leave them on the machine
            with contextlib.suppress(psutil.Error):
                p.kill()
