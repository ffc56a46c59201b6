"""Time to the TUI's first screen on a big store, against the same queries without the UI.

Builds a store with 10k runs and 100k metric values (plus a few sources), then, in fresh
processes (so imports count, as they do for a person typing ``annealplan``):

- bare: import the store, open the file, run the first screen's queries
  (``store.sources()``, ``store.counts()``) and describe each source's cost model, with
  the very code the screen uses (``planner.tui.rows.read_first_screen``) and no UI: the
  script checks that Textual was not imported (an earlier version imported the row code
  from the screen module, which loaded Textual and flattered the ratio);
- tui: import the app, build it and run it headless at 80×24 until the sources table is
  filled and drawn.

Both get the same collected plugin registry (collecting it is the CLI's job, outside both
timings). A third script times a minimal Textual app (a Static and the Footer) in the same
harness: what any Textual UI costs before it shows anything, so the ratio can be read
against the best a Textual UI could do. Each is repeated; medians are printed with ratios.

    .venv/bin/python bench/tui_startup.py [--runs 10000] [--metrics-per-run 10] [--repeat 5]
        [--quick]
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

from common import quick

ROOT = Path(__file__).resolve().parents[1]

BARE = r"""
import sys, time, json
t0 = time.perf_counter()
sys.path.insert(0, {root!r})
from plugins.manager import load_registry
registry = load_registry(entry_points=False)
t0 = time.perf_counter()
from planner.store import open_store
from planner.tui.rows import read_first_screen
store = open_store({db!r})
data = read_first_screen(store, registry)
elapsed = time.perf_counter() - t0
# the baseline is the queries without any UI: Textual must not have been imported
assert "textual" not in sys.modules, "the bare baseline imported Textual"
counts = data.counts
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

# A Textual app with nothing of ours in it (one Static and the Footer), in the same harness:
# what any Textual UI pays before it shows anything, to read the ratio against.
FLOOR = r"""
import time, json, asyncio
t0 = time.perf_counter()
from textual.app import App
from textual.widgets import Footer, Static

class Minimal(App):
    def compose(self):
        yield Static("hello")
        yield Footer()

async def main():
    async with Minimal().run_test(size=(80, 24)) as pilot:
        await pilot.pause()
    return time.perf_counter() - t0

print(json.dumps({{"s": asyncio.run(main())}}))
"""


#: ``--quick``: sizes that run in seconds (explicit flags still win)
QUICK = {"runs": 200, "metrics_per_run": 2, "repeat": 1}


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
    args = quick.parse_args(ap, QUICK)
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "annealplan.duckdb"
        t = time.perf_counter()
        build_store(db, args.runs, args.metrics_per_run)
        print(f"built the store in {time.perf_counter() - t:.1f} s", file=sys.stderr)
        fmt = {"root": str(ROOT), "db": str(db), "project": tmp}
        bare, tui, floor = [], [], []
        for _ in range(args.repeat):
            b = timed(BARE.format(**fmt))
            u = timed(TUI.format(**fmt))
            f = timed(FLOOR.format(**fmt))
            bare.append(b["s"])
            tui.append(u["s"])
            floor.append(f["s"])
        assert b["runs"] == args.runs and b["metrics"] == args.runs * args.metrics_per_run
        assert u["rows"] == 8
    mb, mt, mf = statistics.median(bare), statistics.median(tui), statistics.median(floor)
    print(f"store: {args.runs} runs, {args.runs * args.metrics_per_run} metric values, 8 sources")
    print(f"bare queries (import store, open, sources+counts): median {mb:.3f} s  {bare}")
    print(f"tui first screen (import app, open, run to table): median {mt:.3f} s  {tui}")
    print(f"minimal Textual app (import, start, first frame): median {mf:.3f} s  {floor}")
    print(f"ratio tui / bare: {mt / mb:.2f}x   (goal: tui < 1.5 s and < 1.5x)")
    print(
        f"floor for any Textual UI, (bare + minimal app) / bare: {(mb + mf) / mb:.2f}x; "
        f"ours above that floor: {mt - mb - mf:+.3f} s"
    )


if __name__ == "__main__":
    main()
