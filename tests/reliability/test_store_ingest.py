"""The planner's store: ``kill -9`` the planner during ingests → no partial rows (a run is
in the store with all its metrics, or not at all), and re-ingesting changes nothing.

Kills: ``ANNEALPLAN_RELIABILITY_STORE_KILLS`` (CI default 5)."""

from __future__ import annotations

import random
import subprocess
import sys
import time
from pathlib import Path

from planner.domain import Metric, Run
from planner.store import open_store

from .conftest import env_int

KILLS = env_int("ANNEALPLAN_RELIABILITY_STORE_KILLS", 5)
METRICS = 300

WRITER = f"""
import sys
from planner.domain import Metric, Run
from planner.store import open_store
store = open_store(sys.argv[1])
start = int(sys.argv[2])
print("ready", flush=True)
for i in range(start, start + 10_000):
    rid = f"run-{{i}}"
    run = Run(run_id=rid, source="s", compute=float(i + 1), origin="executor")
    metrics = [Metric(run_id=rid, name=f"m{{k}}", value=float(k)) for k in range({METRICS})]
    store.ingest_result(run, metrics, {{}})
    print("ingested", rid, flush=True)
"""


def _counts(path: Path) -> dict[str, int]:
    store = open_store(path)
    try:
        runs = {r.run_id for r in store.runs()}
        with store.transaction() as con:
            rows = con.execute("SELECT run_id, count(*) FROM metrics GROUP BY run_id").fetchall()
        per_run = dict(rows)
        assert set(per_run) <= runs, "metrics without their run"
        return {rid: per_run.get(rid, 0) for rid in runs}
    finally:
        store.close()


def test_store_kill_during_ingest_leaves_no_partial_rows(tmp_path: Path):
    db = tmp_path / "plan.duckdb"
    open_store(db).close()
    rng = random.Random(7)
    start = 0
    for _ in range(KILLS):
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(db), str(start)],
            stdout=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).resolve().parents[2],
        )
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        assert proc.stdout.readline().startswith("ingested")
        time.sleep(rng.uniform(0.0, 0.5))  # then a random moment, most likely mid-ingest
        proc.kill()
        proc.wait(timeout=30)
        counts = _counts(db)
        assert counts, "the writer ingested nothing before the kill"
        partial = {rid: n for rid, n in counts.items() if n != METRICS}
        assert not partial, partial
        start = max(int(r.split("-")[1]) for r in counts) + 1
    # Re-ingesting a run already there is a no-op, and returns False.
    store = open_store(db)
    try:
        rid = sorted(counts)[0]
        again = store.ingest_result(
            Run(run_id=rid, source="s", compute=1.0, origin="executor"),
            [Metric(run_id=rid, name="m0", value=99.0)],
            {},
        )
        assert again is False
    finally:
        store.close()
    assert _counts(db)[rid] == METRICS
