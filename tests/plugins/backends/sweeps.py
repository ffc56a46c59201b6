"""What the cluster backends' tests share: a tiny sweep, a planner run as people run it
(``annealplan sweep run``), and waits with a useful message when they time out."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
from click.testing import CliRunner, Result

from planner.cli import cli
from planner.domain import AnnealSpec, Source
from planner.store import open_store
from tests.dispatch.conftest import sweep_meta

ANNEALPLAN = Path(sys.executable).with_name("annealplan")
#: a sweep of two tiny anneals and one whose data is missing (it fails in its first stage)
GOOD = ("good-domain-600", "good-control-1200")
BAD = "bad-missing-600"
#: a job long enough to cancel while it trains: 300 steps of 4×32 tokens
LONG_TOKENS = 300 * 4 * 32


def annealplan(project: Path, *args: str) -> Result:
    """``annealplan --project PROJECT ARGS`` in this process."""
    return CliRunner().invoke(cli, ["--project", str(project), *args])


def save_sweep(project: Path, experiment: str) -> None:
    """Register the sources and store the experiment (two good jobs, one bad)."""
    store = open_store(project / "annealplan.duckdb")
    try:
        store.add_source(Source("domain", "files", {"paths": ["data/domain.jsonl"]}))
        store.add_source(Source("missing", "files", {"paths": ["data/missing.jsonl"]}))
        store.save_experiment(
            experiment,
            [
                AnnealSpec(f"{experiment}-{GOOD[0]}", experiment, "domain", 600.0, 0.5, 0),
                AnnealSpec(f"{experiment}-{GOOD[1]}", experiment, None, 1200.0, 1.0, 0),
                AnnealSpec(f"{experiment}-{BAD}", experiment, "missing", 600.0, 0.5, 0),
            ],
            sweep_meta(),
        )
    finally:
        store.close()


def wait_for(
    predicate: Callable[[], Any],
    timeout_s: float,
    what: Callable[[], str] | str,
    planner: subprocess.Popen[str] | None = None,
):
    """Poll ``predicate`` until it is true; the timeout says where things stood. With a
    ``planner`` process, its end is a failure at once, with what it printed."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if planner is not None and planner.poll() is not None:
            out, err = planner.communicate()
            raise AssertionError(
                f"the planner ended (exit {planner.returncode}) while waiting for "
                f"{what() if callable(what) else what}:\n{out}\n{err[-4000:]}"
            )
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what() if callable(what) else what}")


def start_planner(project: Path, experiment: str) -> subprocess.Popen[str]:
    """``annealplan sweep run EXPERIMENT`` as its own process (to be killed mid-sweep)."""
    return subprocess.Popen(
        [str(ANNEALPLAN), "--project", str(project), "sweep", "run", experiment, "--poll",
         "0.3", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )  # fmt: skip


def kill(proc: subprocess.Popen[str]) -> None:
    """SIGKILL: the planner runs no clean-up at all."""
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)


def job_state(project: Path, job_id: str) -> str:
    """A job's state as ``annealplan jobs show`` gives it."""
    return json.loads(annealplan(project, "jobs", "show", job_id, "--json").stdout)["state"]


def shm_buffers_of(logs: list[str]) -> set[str]:
    """This user's DeepSpeed all-reduce buffers in shared memory now, of the launches these
    job logs show (their master ports); other launches' buffers are not counted."""
    from executors.worker import SHM_BUFFER, SHM_DIR

    ports = {port for log in logs for port in re.findall(r"--master_port (\d+)", log)}
    assert ports, "no launch found in the job logs"
    if not SHM_DIR.is_dir():
        return set()
    return {
        p.name
        for p in SHM_DIR.glob(f"{SHM_BUFFER}_{os.getuid()}_*")
        if p.name.split("_")[-2] in ports
    }


def summary(result: Result) -> dict[str, Any]:
    return json.loads(result.stdout)


def processes_of(folder: Path) -> list[psutil.Process]:
    """Processes whose command line or working folder is under ``folder``."""
    found = []
    for p in psutil.process_iter(["cmdline", "cwd"]):
        try:
            cmd = " ".join(p.info["cmdline"] or [])
            if str(folder) in cmd or (p.info["cwd"] or "").startswith(str(folder)):
                found.append(p)
        except psutil.Error:
            continue
    return found


def metric_rows(project: Path, metric: str) -> list[str]:
    """Run ids of a metric's rows in the store (one per run when ingested once)."""
    store = open_store(project / "annealplan.duckdb")
    try:
        return sorted(o.run_id for o in store.observations(metric=metric))
    finally:
        store.close()


def screens_show_backend(project: Path, client: Any, experiment: str, jobs: dict[str, str]):
    """The terminal UI on a cluster executor: the Executors screen lists it with its
    backend and health, and the Jobs screen shows where each of the experiment's jobs
    runs (``name (backend)``) and its state, as ``jobs`` (job id → state) says."""
    import asyncio

    from textual.widgets import DataTable, Select

    from planner.config import load_settings
    from planner.tui.app import make_app
    from plugins.manager import load_registry
    from tests.tui.helpers import settle

    where = f"{client.name} ({client.backend})"

    async def go() -> None:
        store = open_store(project / "annealplan.duckdb")
        try:
            settings = load_settings(project_dir=project)
            registry = load_registry(entry_points=False)
            app = make_app(settings, store, registry, client, mode="executors")
            async with app.run_test(size=(140, 40)) as pilot:
                await settle(app, pilot)
                table = app.screen.query_one("#executors-table", DataTable)
                row = table.get_row(client.name)
                assert row[:4] == [client.name, client.backend, client.url, "ok"], row
            app = make_app(settings, store, registry, client, mode="jobs")
            async with app.run_test(size=(140, 40)) as pilot:
                await settle(app, pilot, rounds=3)
                app.screen.query_one("#jobs-experiment", Select).value = experiment
                await settle(app, pilot, rounds=3)
                table = app.screen.query_one("#jobs-table", DataTable)
                shown = {
                    job: (table.get_cell(job, "executor"), table.get_cell(job, "state"))
                    for job in jobs
                }
                assert shown == {job: (where, state) for job, state in jobs.items()}, shown
        finally:
            await client.aclose()
            store.close()

    asyncio.run(go())
