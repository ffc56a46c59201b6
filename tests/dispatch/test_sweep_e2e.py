"""A sweep end to end on loopback: a real daemon started as users start it (the ``local``
backend, reached through the plugin registry like every executor), real DeepSpeed anneals
and real lm-eval on a tiny local task; results land in DuckDB exactly once."""

from __future__ import annotations

import asyncio
from pathlib import Path

from planner.dispatch.registry import open_clients
from planner.dispatch.scheduler import run_sweep
from planner.domain import AnnealSpec, Source
from planner.store import open_store
from plugins.manager import load_registry
from tests.dispatch.conftest import shm_buffers, sweep_meta


def _store(root: Path):
    store = open_store(root / "annealplan.duckdb")
    store.add_source(Source("domain", "files", {"paths": ["data/domain.jsonl"]}))
    store.save_experiment(
        "tiny",
        [
            AnnealSpec("job-domain-600", "tiny", "domain", 600.0, 0.5, 0),
            AnnealSpec("job-control-1200", "tiny", None, 1200.0, 1.0, 0),
        ],
        sweep_meta(),
    )
    return store


def test_sweep_runs_real_jobs_and_ingests_each_once(executor_root: Path):
    store = _store(executor_root)
    seen = []
    registry = load_registry(entry_points=False)

    async def go():
        # No executors.toml: the embedded local daemon, rooted at the project folder.
        async with open_clients(executor_root, registry) as clients:
            assert [c.name for c in clients] == ["local"]
            first = await run_sweep(store, "tiny", clients, on_update=seen.append, poll_s=0.5)
            second = await run_sweep(store, "tiny", clients, poll_s=0.5)
            return first, second

    first, second = asyncio.run(go())
    assert first.failed == [], first.failed
    assert (first.submitted, first.succeeded, first.ingested, first.reused) == (2, 2, 2, 0)
    assert (second.submitted, second.ingested, second.reused) == (0, 0, 2)
    runs = {r.run_id: r for r in store.runs(study="tiny")}
    assert set(runs) == {"job-domain-600", "job-control-1200"}
    assert runs["job-domain-600"].source == "domain"
    assert runs["job-control-1200"].source == "control"
    assert all(r.compute > 0 and r.params > 0 for r in runs.values())
    names = {o.metric for o in store.observations(study="tiny")}
    assert {"tiny_mc/acc", "tiny_mc/logprob_correct"} <= names
    # Exactly once: one metric row per (run, metric).
    obs = store.observations(study="tiny", metric="tiny_mc/acc")
    assert sorted(o.run_id for o in obs) == sorted(runs)
    meta = store.run_meta("job-domain-600")
    assert meta["compute_unit"] == "usd" and meta["versions"]["deepspeed"] != "absent"
    assert meta["data_hash"] and meta["checkpoint_hash"]
    assert any(r.state.value == "training" for r in seen) or seen
    # DeepSpeed's CPU op never unlinks its shared-memory buffers (70 MB of RAM per rank);
    # the worker removes each launch's own
    left = shm_buffers(executor_root / ".annealplan" / "executor")
    assert not left, left
