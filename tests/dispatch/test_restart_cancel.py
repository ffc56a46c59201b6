"""Crash and cancel on a real daemon: kill -9 of the daemon mid-training, a restart, the job
resumes from its last complete checkpoint and is ingested once; a cancel leaves no process."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import httpx
import psutil

from executors.protocol import JobState
from planner.dispatch.ingest import build_job
from planner.dispatch.scheduler import run_sweep
from planner.domain import AnnealSpec
from planner.store import open_store
from plugins.backends.local.launcher import LocalExecutor
from tests.dispatch.conftest import shm_buffers, sweep_meta

# 300 optimizer steps of 4×32 tokens, a complete checkpoint every 10: long enough that the
# trainer is still at work when the daemon comes back.
LONG = {"checkpoint_every_steps": 10}
LONG_TOKENS = 300 * 4 * 32


def _wait(predicate, timeout_s: float, what: str, every_s: float = 0.1):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every_s)
    raise AssertionError(f"timed out waiting for {what}")


def _http(ex: LocalExecutor) -> httpx.Client:
    return httpx.Client(
        base_url=ex.url, headers={"Authorization": f"Bearer {ex.token}"}, timeout=30
    )


def _state(http: httpx.Client, job_id: str) -> dict:
    return http.get(f"/v1/jobs/{job_id}").json()


def _checkpoint(http: httpx.Client, job_id: str, ckpts: Path, timeout_s: float = 480) -> None:
    """Wait for the job's first complete checkpoint; a job that ends first fails the test
    at once, and a timeout says where the job was (its state and the end of its log)."""

    def ready():
        if list(ckpts.glob("step_*/COMPLETE")):
            return True
        state = _state(http, job_id)
        assert not JobState(state["state"]).final, state
        return False

    try:
        _wait(ready, timeout_s, f"a complete checkpoint of {job_id}", 0.5)
    except AssertionError as e:
        log = http.get(f"/v1/jobs/{job_id}/log").json()["text"]
        raise AssertionError(f"{e}; state {_state(http, job_id)}; log ends:\n{log[-3000:]}") from e


def test_kill9_restart_resumes_from_checkpoint_then_cancel_leaves_no_process(
    executor_root: Path,
):
    store = open_store(executor_root / "annealplan.duckdb")
    meta = sweep_meta(**LONG)
    resume = AnnealSpec("job-resume", "crash", None, float(LONG_TOKENS), 1.0, 0)
    doomed = AnnealSpec("job-cancel", "other", None, float(LONG_TOKENS), 1.0, 1)
    store.save_experiment("crash", [resume], meta)
    state_dir = executor_root / ".annealplan" / "executor"
    ckpts = state_dir / "jobs" / resume.job_id / "ckpt"

    ex = LocalExecutor(executor_root).start()
    try:
        with _http(ex) as http:
            r = http.post(
                "/v1/jobs", json=build_job(resume, meta, store.source).model_dump(mode="json")
            )
            assert r.status_code == 201
            _checkpoint(http, resume.job_id, ckpts)
        os.kill(ex.proc.pid, signal.SIGKILL)  # the daemon dies; its worker is orphaned
        ex.proc.wait(timeout=10)
    finally:
        ex.stop()

    with LocalExecutor(executor_root) as ex2, _http(ex2) as http:
        done = _wait(
            lambda: (s := _state(http, resume.job_id))["state"] in ("succeeded", "failed") and s,
            240,
            "the resumed job",
            0.5,
        )
        assert done["state"] == "succeeded", done
        assert done["attempts"] == 2
        log = http.get(f"/v1/jobs/{resume.job_id}/log").json()["text"]
        resumed = [line for line in log.splitlines() if "resumed from complete checkpoint" in line]
        assert resumed, "the second attempt did not resume from a checkpoint"
        step = int(resumed[-1].rsplit("step_", 1)[1])
        assert 10 <= step < 300 and step % 10 == 0

        async def ingest():
            async with ex2.client() as client:
                return await run_sweep(store, "crash", [client], poll_s=0.2)

        summary = asyncio.run(ingest())
        assert (summary.ingested, summary.succeeded, summary.failed) == (1, 1, [])
        assert asyncio.run(ingest()).ingested == 0
        assert [r.run_id for r in store.runs()] == [resume.job_id]

        # Cancel a training job: its whole process group goes.
        r = http.post(
            "/v1/jobs", json=build_job(doomed, meta, store.source).model_dump(mode="json")
        )
        assert r.status_code == 201
        doomed_ckpts = state_dir / "jobs" / doomed.job_id / "ckpt"
        _checkpoint(http, doomed.job_id, doomed_ckpts)
        job_dir = str(state_dir / "jobs" / doomed.job_id)
        procs = [
            p
            for p in psutil.process_iter(["cmdline", "cwd"])
            if job_dir in (cmd := " ".join(p.info["cmdline"] or []))
            or (f"--job-id {doomed.job_id}" in cmd and str(state_dir) in cmd)
            or (p.info["cwd"] or "") == job_dir
        ]
        assert any("executors.worker" in " ".join(p.cmdline()) for p in procs)
        assert procs, "no trainer process found for the job"
        r1 = http.delete(f"/v1/jobs/{doomed.job_id}").json()
        assert r1["cancel_requested"] is True
        final = _wait(
            lambda: (s := _state(http, doomed.job_id))["state"] == "cancelled" and s,
            30,
            "the cancel",
        )
        assert final["state"] == "cancelled"
        assert http.delete(f"/v1/jobs/{doomed.job_id}").json()["state"] == "cancelled"
        _, alive = psutil.wait_procs(procs, timeout=5)
        assert alive == [], f"left behind: {alive}"
        # the killed trainers could not remove their shared-memory buffers; the daemon
        # does when it reaps the worker
        assert not (left := shm_buffers(state_dir)), left
    assert ex2.proc is None
