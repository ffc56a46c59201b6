"""Backtest time with the fits' BLAS held to one thread, against the BLAS library's default.

A fit's matrices are small, and the backtest runs one worker process per core: with BLAS's
own threads on top, the workers' threads outnumber the cores and spin against each other.
This builds a synthetic runs table of large groups (25 sources × 60 computes × 3 seeds, one
group per metric, the shape of a many-recipe data-decision study), then backtests it with the
default worker count twice, in fresh processes that differ only in ``ANNEALPLAN_BLAS_THREADS``:
``0`` (the BLAS library's default, the baseline) and unset (the planner's default, one
thread). It checks both give the same decisions and prints the times and their ratio.

    .venv/bin/python bench/blas_threads.py [--sources 25] [--computes 60] [--metrics 6] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import quick

ROOT = Path(__file__).resolve().parents[1]


#: ``--quick``: sizes that run in seconds (explicit flags still win)
QUICK = {"sources": 3, "computes": 8, "metrics": 1}


def write_table(path: Path, sources: int, computes: int, metrics: int) -> None:
    """Accuracies rising as saturating power laws in compute, with seed noise."""
    rng = np.random.default_rng(0)
    xs = np.logspace(17, 21, computes)
    lines = ["study,source,compute,metric,value,seed"]
    for m in range(metrics):
        for s in range(sources):
            scale, floor = rng.uniform(0.5, 1.5), 0.3 + rng.uniform(0, 0.1)
            for seed in range(3):
                values = 1 - 0.5 * (floor + scale * (xs / 1e17) ** -0.2)
                values = values + rng.normal(0, 0.01, xs.size)
                lines += [
                    f"ladder,src{s:02d},{x:.6g},task{m}/acc,{v:.6f},{seed}"
                    for x, v in zip(xs, values, strict=True)
                ]
    path.write_text("\n".join(lines) + "\n")


def timed_backtest(table: Path, blas_threads: str | None) -> tuple[float, dict]:
    env = {k: v for k, v in os.environ.items() if k != "ANNEALPLAN_BLAS_THREADS"}
    if blas_threads is not None:
        env["ANNEALPLAN_BLAS_THREADS"] = blas_threads
    cli = [str(Path(sys.executable).with_name("annealplan")), "backtest", str(table), "--json"]
    t = time.perf_counter()
    out = subprocess.run(cli, capture_output=True, text=True, check=True, cwd=ROOT, env=env)
    return time.perf_counter() - t, json.loads(out.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sources", type=int, default=25)
    ap.add_argument("--computes", type=int, default=60)
    ap.add_argument("--metrics", type=int, default=6)
    args = quick.parse_args(ap, QUICK)
    with tempfile.TemporaryDirectory() as tmp:
        table = Path(tmp) / "runs.csv"
        write_table(table, args.sources, args.computes, args.metrics)
        base_s, base = timed_backtest(table, "0")
        ours_s, ours = timed_backtest(table, None)
    keys = ("groups", "pairs", "decision_accuracy", "interval_coverage")
    assert all(base[k] == ours[k] for k in keys), "the thread count changed the decisions"
    are_gap = abs(base["mean_are"] - ours["mean_are"])
    print(
        f"{args.metrics} groups of {args.sources} sources × {args.computes} computes × 3 seeds, "
        f"default worker count ({os.cpu_count()} cores)"
    )
    print(f"BLAS library default threads (baseline): {base_s:.1f} s")
    print(f"BLAS held to one thread (default):       {ours_s:.1f} s")
    print(f"speed-up: {base_s / ours_s:.1f}x  (same decisions; mean ARE differs by {are_gap:.1e})")


if __name__ == "__main__":
    main()
