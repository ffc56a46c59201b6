"""The Jobs screen against a real local executor: run a sweep, read a job's log, cancel a
queued job, and find the finished run in the store (one tiny DeepSpeed anneal)."""

from __future__ import annotations

import time

import pytest
from textual.widgets import DataTable, Log, ProgressBar

from planner.config import load_settings
from planner.domain import AnnealSpec, Source
from planner.store import open_store
from planner.tui.app import make_app
from planner.tui.messages import JobLogRead, JobUpdated, SweepFinished
from planner.tui.screens.jobs import RunForm
from plugins.backends.local.launcher import LocalExecutor
from tests.dispatch.conftest import executor_root, sweep_meta  # noqa: F401
from tests.helpers.tiny import tiny_causal_lm, tiny_root, tiny_tokenizer_path  # noqa: F401
from tests.tui.helpers import caught, settle

pytestmark = pytest.mark.slow

RUN, QUEUED = "job-tui-domain-600", "job-tui-control-1200"


async def wait_for(pilot, predicate, timeout_s: float = 300.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the executor")
        await pilot.pause(0.2)


async def test_run_watch_cancel_and_ingest(executor_root, registry):  # noqa: F811
    store = open_store(executor_root / "annealplan.duckdb")
    store.add_source(Source("domain", "files", {"paths": ["data/domain.jsonl"]}))
    store.save_experiment(
        "tiny",
        [
            AnnealSpec(RUN, "tiny", "domain", 600.0, 0.5, 0),
            AnnealSpec(QUEUED, "tiny", None, 1200.0, 1.0, 0),
        ],
        sweep_meta(),
    )
    settings = load_settings(project_dir=executor_root)
    seen: list = []
    with LocalExecutor(executor_root) as ex:
        client = ex.client()
        app = make_app(settings, store, registry, client, mode="jobs")
        async with app.run_test(size=(100, 30), message_hook=seen.append) as pilot:
            await settle(app, pilot)
            table = app.screen.query_one("#jobs-table", DataTable)
            assert table.row_count == 2
            await pilot.press("r")
            await pilot.pause()
            assert isinstance(app.screen, RunForm)  # prefilled from the stored meta
            await pilot.press("ctrl+s")

            def state(job: str) -> str | None:
                views = [m.job for m in caught(seen, JobUpdated) if m.job.job_id == job]
                return views[-1].state if views else None

            # The executor runs one job at a time: cancel the second while it waits.
            await wait_for(pilot, lambda: state(QUEUED) == "queued" or state(RUN) is not None)
            table.move_cursor(row=1)
            await pilot.press("c")
            await wait_for(pilot, lambda: state(QUEUED) == "cancelled", 60)

            # Follow the running job's log.
            table.move_cursor(row=0)
            await pilot.press("l")
            await wait_for(pilot, lambda: any(m.text for m in caught(seen, JobLogRead)), 120)
            await pilot.pause()
            lines = app.screen.query_one("#jobs-log", Log).lines
            assert lines[0] == f"— log of {RUN} —" and "attempt" in lines[1]

            await wait_for(pilot, lambda: caught(seen, SweepFinished), 300)
            await settle(app, pilot)
            [finished] = caught(seen, SweepFinished)
            assert finished.summary.succeeded == 1 and finished.summary.ingested == 1
            assert [jid for jid, _ in finished.summary.failed] == [QUEUED]
            assert table.get_cell(RUN, "state") in ("succeeded", "ingested")
            assert table.get_cell(QUEUED, "state") == "cancelled"
            assert app.screen.query_one("#jobs-progress", ProgressBar).percentage == 1.0
        await client.aclose()
    runs = store.runs(study="tiny")
    assert [r.run_id for r in runs] == [RUN]
    store.close()
