"""Benchmark: ``annealplan runs import`` of a 200k-run table against DuckDB's own ``read_csv``.

Writes one runs table (CSV: 200k runs of 2 studies x 100 sources x 100 computes x 10 seeds,
a loss and an accuracy each, so 400k rows, with seed, tokens and params columns) and loads
it into fresh DuckDB files, each in a fresh process (so start-up and imports count on both
sides, and each side's peak RSS is its own):

- baseline: ``CREATE TABLE runs AS SELECT * FROM read_csv(file)`` in a bare ``duckdb``
  process: what reading the file into a table costs at the least;
- ours: ``annealplan --db F runs import file`` (validation, run ids, the direction checks,
  one transaction into the runs and metrics tables).

It then imports the same file again into the same store (idempotent: nothing is added) and
prints each time, each peak RSS, and the ratio of ours to the baseline (goal: within 3x).
``--quick`` imports 2,000 runs: a check, in seconds, that the bench still runs.

Run: ``.venv/bin/python bench/import_runs.py [--runs 200000] [--metrics 2] [--quick]``
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: run in a child: the command, then its wall time and the child's peak RSS as one JSON line
TIMED = r"""
import json, resource, subprocess, sys, time
t0 = time.perf_counter()
proc = subprocess.run(sys.argv[1:], capture_output=True, text=True)
elapsed = time.perf_counter() - t0
if proc.returncode:
    sys.exit(f"{sys.argv[1:]} failed ({proc.returncode}): {proc.stderr[-2000:]}")
rss_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({"s": elapsed, "rss_mib": rss_kib / 1024, "stdout": proc.stdout}))
"""

READ_CSV = r"""
import sys, duckdb
con = duckdb.connect(sys.argv[1])
con.execute("CREATE TABLE runs AS SELECT * FROM read_csv(?)", [sys.argv[2]])
print(con.execute("SELECT count(*) FROM runs").fetchall()[0][0])
con.close()
"""


def write_table(path: Path, n_runs: int, n_metrics: int, seed: int) -> int:
    """A runs table of ``n_runs`` runs, ``n_metrics`` rows each; returns the row count.

    Its shape is a big sweep's: 2 studies x 100 sources x 100 computes, and as many seeds of
    each as make ``n_runs`` (10 for 200k runs); a loss and an accuracy per run (further
    metrics are tasks with random scores).
    """
    rng = random.Random(seed)
    sources = [f"source-{i:03d}" for i in range(100)]
    studies, computes = 2, 100
    rows = 0
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["study", "source", "compute", "params", "tokens", "seed", "metric", "value"])
        for i in range(n_runs):
            study = f"study-{i % studies}"
            source = sources[(i // studies) % len(sources)]
            step = (i // (studies * len(sources))) % computes
            repeat = i // (studies * len(sources) * computes)
            params = 1.5e8
            tokens = 1e9 * (1 + step)
            compute = 6.0 * params * tokens
            loss = 2.0 + 5.0 * (compute / 1e18) ** -0.1 + rng.gauss(0.0, 0.01)
            names = ["loss", "acc"] + [f"task-{k}" for k in range(n_metrics - 2)]
            values = [loss, 1.0 / loss] + [rng.random() for _ in range(n_metrics - 2)]
            for name, value in zip(names[:n_metrics], values[:n_metrics], strict=True):
                w.writerow(
                    [study, source, repr(compute), params, tokens, repeat, name, repr(value)]
                )
                rows += 1
    return rows


def timed(*command: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", TIMED, *command],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    if out.returncode:
        sys.exit(out.stderr or out.stdout)
    return json.loads(out.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=200_000)
    ap.add_argument("--metrics", type=int, default=2, help="metric rows per run (at least 1)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="2,000 runs: a check that it runs")
    args = ap.parse_args()
    n_runs = 2_000 if args.quick else args.runs
    annealplan = Path(sys.executable).with_name("annealplan")
    cli = [str(annealplan)] if annealplan.exists() else [sys.executable, "-m", "planner.cli"]
    with tempfile.TemporaryDirectory(prefix="bench-import-") as tmp:
        table = Path(tmp) / "runs.csv"
        rows = write_table(table, n_runs, max(1, args.metrics), args.seed)
        size_mib = table.stat().st_size / 2**20
        base = timed(sys.executable, "-c", READ_CSV, str(Path(tmp) / "base.duckdb"), str(table))
        assert int(base["stdout"]) == rows, base
        db = str(Path(tmp) / "store.duckdb")
        ours = timed(*cli, "--db", db, "runs", "import", str(table), "--json")
        summary = json.loads(ours["stdout"])
        assert summary["runs_added"] == n_runs, summary
        again = timed(*cli, "--db", db, "runs", "import", str(table), "--json")
        assert json.loads(again["stdout"])["runs_unchanged"] == n_runs, again
    print(f"runs table: {n_runs} runs, {rows} rows, {size_mib:.1f} MiB of CSV")
    print(f"duckdb read_csv into a table:     {base['s']:8.2f} s  {base['rss_mib']:7.0f} MiB peak")
    print(f"annealplan runs import:           {ours['s']:8.2f} s  {ours['rss_mib']:7.0f} MiB peak")
    print(
        f"annealplan runs import, again:    {again['s']:8.2f} s  {again['rss_mib']:7.0f} MiB peak"
        " (nothing new)"
    )
    print(f"ratio import / read_csv: {ours['s'] / base['s']:.2f}x (goal: within 3x)")


if __name__ == "__main__":
    main()
