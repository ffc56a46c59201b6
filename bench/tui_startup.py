"""Time to the TUI's first screen on a big store, against the same queries without the UI.

Builds a store with 10k runs and 100k metric values (plus a few sources), then, in fresh
processes (so imports count, as they do for a person typing ``annealplan``):

- bare: import the store, open the file, run the first screen's queries
  (``store.sources()``, ``store.counts()``) and describe each source's cost model;
- tui: import the app, build it and run it headless at 80×24 until the sources table is
  filled and drawn.

Both get the same collected plugin registry (collecting it is the CLI's job, outside both
timings). Each is repeated; medians are printed with their ratio.

    .venv/bin/python bench/tui_startup.py [--runs 10000] [--metrics-per-run 10] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

BARE = r"""
import sys, time, json
t0 = time.perf_counter()
sys.path.insert(0, {root!r})
from plugins.manager import load_registry
registry = load_registry(entry_points=False)
t0 = time.perf_counter()
from planner.store import open_store
from planner.tui.screens.sources import describe_source
store = open_store({db!r})
sources = store.sources()
counts = store.counts()
rows = [describe_source(s, registry) for s in sources]
elapsed = time.perf_counter() - t0
print(json.dumps({{"s": elapsed, "runs": counts["runs"], "metrics": counts["metrics"]}}))
"""

TUI = r"""
import sys, time, json, asyncio
sys.path.insert(0, {root!r})
from plugins.manager import load_registry
registry = load_registry(entry_points=False)
t0 = time.perf_counter()
from planner.config import load_settings
from planner.store import open_store
from planner.tui.app import make_app
from planner.tui.messages import SourcesLoaded

store = open_store({db!r})
settings = load_settings(project_dir={project!r})

async def main():
    app = make_app(settings, store, registry)
    seen = []
    async with app.run_test(size=(80, 24), message_hook=seen.append) as pilot:
        while not any(isinstance(m, SourcesLoaded) for m in seen):
            await asyncio.sleep(0.002)
        await pilot.pause()  # the loaded table handled and a frame drawn
        rows = app.screen.query_one("#sources-table").row_count
        return time.perf_counter() - t0, rows

elapsed, rows = asyncio.run(main())
print(json.dumps({{"s": elapsed, "rows": rows}}))
"""


def build_store(db: Path, n_runs: int, per_run: int) -> None:
    sys.path.insert(0, str(ROOT))
    import numpy as np

    from planner.domain import CostSpec, Metric, Run, Source
    from planner.store import RunsTable, open_store
    from planner.units import Unit

    rng = np.random.default_rng(0)
    sources = [f"source{i:02d}" for i in range(8)]
    runs, metrics = [], []
    for i in range(n_runs):
        rid = f"run-{i:06d}"
        runs.append(
            Run(rid, sources[i % len(sources)], float(10 ** rng.uniform(17, 21)), seed=i % 3)
        )
        for k in range(per_run):
            metrics.append(Metric(rid, f"task{k:02d}/acc", float(rng.uniform(0.2, 0.8))))
    store = open_store(db)
    store.import_runs(RunsTable(tuple(runs), tuple(metrics), {}))
    for i, name in enumerate(sources):
        store.add_source(
            Source(
                name,
                "licensed",
                {"paths": ["data/*.jsonl"], "usd_per_token": 1e-6 * (i + 1), "max_tokens": 1e10},
                CostSpec(
                    "linear", {"per_token": 1e-6 * (i + 1), "fixed": 0.0, "unit": "usd"}, Unit.USD
                ),
                cap_tokens=1e10,
            )
        )
    store.close()


def timed(code: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10_000)
    ap.add_argument("--metrics-per-run", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "annealplan.duckdb"
        t = time.perf_counter()
        build_store(db, args.runs, args.metrics_per_run)
        print(f"built the store in {time.perf_counter() - t:.1f} s", file=sys.stderr)
        fmt = {"root": str(ROOT), "db": str(db), "project": tmp}
        bare, tui = [], []
        for _ in range(args.repeat):
            b = timed(BARE.format(**fmt))
            u = timed(TUI.format(**fmt))
            bare.append(b["s"])
            tui.append(u["s"])
        assert b["runs"] == args.runs and b["metrics"] == args.runs * args.metrics_per_run
        assert u["rows"] == 8
    mb, mt = statistics.median(bare), statistics.median(tui)
    print(f"store: {args.runs} runs, {args.runs * args.metrics_per_run} metric values, 8 sources")
    print(f"bare queries (import store, open, sources+counts): median {mb:.3f} s  {bare}")
    print(f"tui first screen (import app, open, run to table): median {mt:.3f} s  {tui}")
    print(f"ratio tui / bare: {mt / mb:.2f}x   (goal: tui < 1.5 s and < 1.5x)")


if __name__ == "__main__":
    main()
