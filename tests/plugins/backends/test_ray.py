"""The ``ray`` backend against a real local Ray head (started by the module's fixture):
settings refused when the head does not answer, then one scenario on the head (it is the
slow part, so it starts once): a sweep of real tiny anneals whose planner is killed
mid-sweep and restarted (each result ingested once, no job submitted twice), a job that
fails, and a cancel of a queued and of a training job."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import psutil
import pytest

from executors.protocol import AnnealJobSpec, JobState
from planner.dispatch.ingest import build_job
from planner.domain import AnnealSpec, Source
from planner.errors import ConfigError, ExecutorReplyError
from plugins.manager import load_registry
from tests.dispatch.conftest import sweep_meta
from tests.helpers.clusters import free_port
from tests.plugins.backends.sweeps import (
    BAD,
    GOOD,
    LONG_TOKENS,
    annealplan,
    job_state,
    kill,
    metric_rows,
    processes_of,
    save_sweep,
    screens_show_backend,
    shm_buffers_of,
    start_planner,
    summary,
    wait_for,
)

pytestmark = pytest.mark.slow


def submitter(address: str, root: Path, **settings):
    backend = load_registry(entry_points=False).executor_backend("ray")
    parsed = backend.parse_settings(
        {"address": address, "root": str(root), "cpus": 2, "python": sys.executable, **settings}
    )
    return backend.connect(parsed, name="ray1", project_dir=root)


def test_a_head_that_does_not_answer_is_one_clear_error(tmp_path: Path, monkeypatch):
    nowhere = f"http://127.0.0.1:{free_port()}"
    down = annealplan(
        tmp_path, "executors", "add", "ray1", "--backend", "ray", "--address", nowhere,
        "--root", str(tmp_path),
    )  # fmt: skip
    assert down.exit_code == 2
    assert f"the head at {nowhere} does not answer" in down.output
    assert "ray start --head" in down.output and "--address" in down.output
    not_url = annealplan(
        tmp_path, "executors", "add", "ray1", "--backend", "ray", "--address", "127.0.0.1:8265",
        "--root", str(tmp_path),
    )  # fmt: skip
    assert not_url.exit_code == 2 and "not the head's dashboard URL" in not_url.output
    assert not (tmp_path / "executors.toml").exists()

    # A planner-only install has no Ray: the error names the extra (the import is made to
    # fail here, since Ray is installed in this environment).
    with monkeypatch.context() as m:
        m.setitem(sys.modules, "ray.job_submission", None)
        no_ray = annealplan(
            tmp_path, "executors", "add", "ray1", "--backend", "ray", "--address", nowhere,
            "--root", str(tmp_path),
        )  # fmt: skip
    assert no_ray.exit_code == 2 and "pip install 'annealplan[ray]'" in no_ray.output

    # A registered head that went away: the submit fails as "unreachable" and sends nothing.
    spec = AnnealJobSpec(job_id="never-sent", base_model="model", source=None,
                         replay={"source": {"kind": "files", "config": {}}, "tokens": 64})  # fmt: skip
    client = submitter(nowhere, tmp_path)

    async def submit():
        try:
            await client.submit(spec)
        finally:
            await client.aclose()

    with pytest.raises(ExecutorReplyError, match="does not answer") as e:
        asyncio.run(submit())
    assert e.value.unreachable


def test_sweep_restart_failure_and_cancel_on_a_ray_head(ray, cluster_root: Path):
    project = cluster_root
    save_sweep(project, "ray")
    good = [f"ray-{g}" for g in GOOD]
    bad = f"ray-{BAD}"
    added = annealplan(
        project, "executors", "add", "ray1", "--backend", "ray", "--address", ray.address,
        "--root", str(project), "--cpus", "2", "--python", sys.executable, "--json",
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    assert json.loads(added.stdout)["backend"] == "ray"
    state = project / ".annealplan" / "ray1"
    jobs = state / "jobs"

    def status(job_id: str) -> dict:
        path = jobs / job_id / "status.json"
        return json.loads(path.read_text()) if path.is_file() else {}

    def ray_jobs() -> str:
        from ray.job_submission import JobSubmissionClient

        try:
            infos = JobSubmissionClient(ray.address).list_jobs()
        except Exception as e:  # what stood, for the failure message only
            return f"the head does not answer: {e}"
        return ", ".join(f"{i.submission_id} {i.status} {i.message or ''}" for i in infos)

    # The first planner submits the sweep and is killed once a good job has succeeded
    # (read from the job's folder: the head runs on this machine), the other still runs.
    # Ray starts jobs waiting for the same CPUs in no promised order, so either may be
    # first; both need all the head's CPUs, so they never end together.
    first = start_planner(project, "ray")
    try:
        done_first = wait_for(
            lambda: [g for g in good if status(g).get("state") == "succeeded"],
            420,
            lambda: f"a good job ({status(good[0])}, {status(good[1])}; Ray: {ray_jobs()})",
            planner=first,
        )
        [other] = [g for g in good if g not in done_first]
        assert not JobState(status(other).get("state", "queued")).final
    finally:
        kill(first)

    second = annealplan(project, "sweep", "run", "ray", "--poll", "0.5", "--json")
    assert second.exit_code == 1, second.output  # the bad job failed
    done = summary(second)
    assert done["succeeded"] == 2 and done["reused"] + done["ingested"] == 2
    [(failed_id, reason)] = [(f["job_id"], f["reason"]) for f in done["failed"]]
    assert failed_id == bad and "failed: " in reason and "missing.jsonl" in reason
    assert metric_rows(project, "tiny_mc/acc") == sorted(good)
    third = summary(annealplan(project, "sweep", "run", "ray", "--json"))
    assert (third["ingested"], third["reused"]) == (0, 2)

    from ray.job_submission import JobSubmissionClient

    head = JobSubmissionClient(ray.address)
    submitted = sorted(j.submission_id for j in head.list_jobs())
    assert submitted == sorted([*good, bad])  # each job submitted once, restart or not

    listed = json.loads(annealplan(project, "jobs", "list", "--json").stdout)
    assert {(r["job_id"], r["state"], r["backend"]) for r in listed} == {
        (good[0], "succeeded", "ray"),
        (good[1], "succeeded", "ray"),
        (bad, "failed", "ray"),
    }
    shown = json.loads(annealplan(project, "jobs", "show", bad, "--json").stdout)
    assert shown["error"]["code"] == "materialize_failed" and shown["attempts"] == 1
    log = annealplan(project, "jobs", "logs", good[0])
    assert log.exit_code == 0 and "launch: " in log.stdout
    assert f"job {good[0]} succeeded" in log.stdout
    screens_show_backend(
        project,
        submitter(ray.address, project),
        "ray",
        {good[0]: "ingested", good[1]: "ingested", bad: "failed"},
    )

    # Cancel: a job waiting for CPUs, then one that trains.
    meta = sweep_meta(checkpoint_every_steps=10)
    source = Source("domain", "files", {"paths": ["data/domain.jsonl"]})
    specs = [AnnealSpec(f"rcancel-{i}", "c", "domain", float(LONG_TOKENS), 0.5, i) for i in (0, 1)]
    running, waiting = (build_job(s, meta, lambda _: source) for s in specs)
    client = submitter(ray.address, project)

    async def go():
        try:
            await client.submit(running)
            deadline = asyncio.get_running_loop().time() + 420
            while (await client.job(running.job_id)).state is not JobState.TRAINING:
                assert asyncio.get_running_loop().time() < deadline, "never trained"
                await asyncio.sleep(0.5)
            queued = await client.submit(waiting)  # two CPUs each: it waits
            assert queued.state is JobState.QUEUED
            assert (await client.submit(waiting)).job_id == waiting.job_id  # idempotent
            # cancelled at once, though Ray stops it only when it would start
            await client.cancel(waiting.job_id)
            return await client.job(waiting.job_id)
        finally:
            await client.aclose()

    never_ran = asyncio.run(go())
    assert never_ran.state is JobState.CANCELLED and never_ran.cancel_requested
    folder = state / "jobs" / running.job_id
    procs = wait_for(
        lambda: [p for p in processes_of(folder) if "anneal.py" in " ".join(p.cmdline())],
        120,
        "the trainer to start",
    )
    batch = [
        p for p in processes_of(state) if f"--job-id {running.job_id}" in " ".join(p.cmdline())
    ]
    assert batch, "no batch process found for the job"
    first_cancel = annealplan(project, "jobs", "cancel", running.job_id, "--json")
    assert first_cancel.exit_code == 0, first_cancel.output
    assert json.loads(first_cancel.stdout)["cancel_requested"] is True
    wait_for(lambda: job_state(project, running.job_id) == "cancelled", 90, "the cancel")
    again = json.loads(annealplan(project, "jobs", "cancel", running.job_id, "--json").stdout)
    assert again["state"] == "cancelled"
    wait_for(lambda: head.get_job_status(running.job_id).value == "STOPPED", 60, "Ray's stop")
    _, alive = psutil.wait_procs(procs + batch, timeout=30)
    assert not alive, f"left behind: {alive}"
    # The CPUs are free: Ray starts the cancelled job's supervisor, which stops it before
    # it trains.
    wait_for(
        lambda: head.get_job_status(waiting.job_id).value == "STOPPED",
        120,
        lambda: f"Ray to stop the cancelled queued job ({head.get_job_status(waiting.job_id)})",
    )
    assert job_state(project, waiting.job_id) == "cancelled"
    assert not (state / "jobs" / waiting.job_id / "final").exists()
    logs = [head.get_job_logs(j.submission_id) for j in head.list_jobs()]
    assert not (left := shm_buffers_of(logs)), left


def test_bad_settings_never_reach_ray(tmp_path: Path):
    backend = load_registry(entry_points=False).executor_backend("ray")
    with pytest.raises(ConfigError, match="gpus: Input should be greater than or equal to 0"):
        backend.parse_settings({"address": "http://h:8265", "root": "/r", "gpus": -1})
    with pytest.raises(ConfigError, match="partition: Extra inputs are not permitted"):
        backend.parse_settings({"address": "http://h:8265", "root": "/r", "partition": "gpu"})


class _HeadWithoutAgentYet:
    """Ray's job client while the head's job agent is still starting: a submit is refused
    ``busy`` times with Ray's own words, then taken. (A real head cannot be held in that
    state on demand, so this stands in for its client.)"""

    def __init__(self, busy: int) -> None:
        self.busy = busy
        self.submitted: dict[str, dict] = {}

    def get_job_info(self, job_id: str):
        if job_id not in self.submitted:
            raise RuntimeError(f"Request failed with status code 404: Job {job_id} does not exist.")
        from types import SimpleNamespace

        return SimpleNamespace(
            submission_id=job_id, status="PENDING", metadata=self.submitted[job_id]["metadata"],
            start_time=None, end_time=None, message="",
        )  # fmt: skip

    def submit_job(self, **kwargs):
        if self.busy:
            self.busy -= 1
            raise RuntimeError(
                "Request failed with status code 500: No available agent to submit job, "
                "please try again later."
            )
        self.submitted[kwargs["submission_id"]] = kwargs
        return kwargs["submission_id"]


def test_a_head_still_starting_its_job_agent_is_waited_for(tmp_path: Path, monkeypatch):
    from plugins.backends.ray import submitter as module

    monkeypatch.setattr(module, "AGENT_RETRY_S", 0.01)
    spec = AnnealJobSpec(job_id="j1", base_model="model", source=None,
                         replay={"source": {"kind": "files", "config": {}}, "tokens": 64})  # fmt: skip
    client = submitter("http://127.0.0.1:1", tmp_path)
    client._client = head = _HeadWithoutAgentYet(busy=3)
    record = asyncio.run(client.submit(spec))
    assert record.job_id == "j1" and record.state is JobState.QUEUED
    assert list(head.submitted) == ["j1"] and head.busy == 0  # submitted once, when taken

    # An agent that never comes up: "unavailable" (dispatch retries), saying what to do.
    monkeypatch.setattr(module, "AGENT_WAIT_S", 0.0)
    client._client = _HeadWithoutAgentYet(busy=10**6)
    with pytest.raises(ExecutorReplyError, match="has no job agent up yet") as e:
        asyncio.run(client.submit(spec))
    assert e.value.unreachable and "wait for the head to finish starting" in e.value.msg
