"""The ``slurm`` backend against a real one-node Slurm (munged, slurmctld, slurmd started
by the module's fixture): bad settings refused before anything is sent, a sweep of real
tiny anneals whose planner is killed mid-sweep and restarted (each result ingested once,
no job submitted twice), a job that fails, a cancel, and a multi-node hostfile."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import psutil
import pytest

from executors.batch import (
    BatchFolder,
    BatchOptions,
    _hostfile,
    allocation_hosts,
    hostfile_text,
)
from executors.protocol import AnnealJobSpec, JobState
from executors.stages.context import JobFailed, WorkerConfig
from executors.stages.launch import launch_command, world_size
from planner.dispatch.ingest import build_job
from planner.domain import AnnealSpec, Source
from planner.errors import ConfigError, ExecutorReplyError
from plugins.backends.slurm.submitter import SLURM_ID_FILE
from plugins.manager import load_registry
from tests.dispatch.conftest import shm_buffers, sweep_meta
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
    start_planner,
    summary,
    wait_for,
)

pytestmark = pytest.mark.slow


def add_hpc(project: Path, *more: str):
    """``annealplan executors add hpc --backend slurm …``: two CPUs per job, so the node
    runs one job at a time."""
    return annealplan(
        project, "executors", "add", "hpc", "--backend", "slurm", "--root", str(project),
        "--partition", "debug", "--cpus-per-task", "2", "--python", sys.executable, *more,
    )  # fmt: skip


def submitter(project: Path, **settings):
    backend = load_registry(entry_points=False).executor_backend("slurm")
    parsed = backend.parse_settings(
        {"root": str(project), "cpus_per_task": 2, "python": sys.executable, **settings}
    )
    return backend.connect(parsed, name="hpc", project_dir=project)


def test_bad_settings_are_one_clear_error_and_nothing_is_submitted(
    slurm, cluster_root: Path, tmp_path: Path, monkeypatch
):
    project = tmp_path / "project"
    project.mkdir()
    wrong = annealplan(
        project, "executors", "add", "hpc", "--backend", "slurm", "--root", str(cluster_root),
        "--partition", "gpu",
    )  # fmt: skip
    assert wrong.exit_code == 2
    assert "partition 'gpu' is not on this cluster (sinfo lists debug)" in wrong.output
    assert "--partition NAME" in wrong.output
    assert not (project / "executors.toml").exists()

    empty = tmp_path / "no-slurm"
    empty.mkdir()
    no_bin = annealplan(
        project, "executors", "add", "hpc", "--backend", "slurm", "--root", str(cluster_root),
        "--bin-dir", str(empty),
    )  # fmt: skip
    assert no_bin.exit_code == 2 and f"sbatch is not in {empty}" in no_bin.output
    assert "--bin-dir" in no_bin.output
    with monkeypatch.context() as m:
        m.setenv("PATH", str(empty))
        no_path = annealplan(
            project, "executors", "add", "hpc", "--backend", "slurm", "--root", str(cluster_root)
        )
    assert no_path.exit_code == 2 and "sbatch is not on PATH" in no_path.output
    assert not (project / "executors.toml").exists()

    # Checked again before each submission: a partition that went away, then a job that
    # sbatch itself refuses (a time limit it cannot read); neither leaves a folder or a job.
    replay = {"kind": "files", "config": {"paths": ["data/general.jsonl"]}}
    spec = AnnealJobSpec(job_id="never-sent", base_model="model", source=None,
                         replay={"source": replay, "tokens": 64})  # fmt: skip

    async def submit(client, job=spec):
        try:
            await client.submit(job)
        finally:
            await client.aclose()

    gone = submitter(cluster_root, partition="retired")
    with pytest.raises(ConfigError, match="partition 'retired' is not on this cluster"):
        asyncio.run(submit(gone))
    refused = submitter(cluster_root, time="forever")
    with pytest.raises(
        ConfigError, match=r"sbatch refused job never-sent: .*nothing was submitted"
    ):
        asyncio.run(submit(refused))
    assert not (refused.state / "jobs" / "never-sent").exists()
    # A job that would fail for certain is refused as the daemon refuses it (its admission).
    unknown = AnnealJobSpec(job_id="never-sent", base_model="model", source=None,
                            replay={"source": {**replay, "kind": "filez"}, "tokens": 64})  # fmt: skip
    with pytest.raises(ExecutorReplyError, match="source kind 'filez'") as e:
        asyncio.run(submit(submitter(cluster_root, partition="debug"), unknown))
    assert (e.value.status, e.value.code) == (422, "unknown_source_kind")
    assert not (refused.state / "jobs" / "never-sent").exists()
    assert not [n for n in slurm.job_names() if n.endswith("never-sent")]


def test_a_sweep_survives_a_planner_restart_and_ingests_each_result_once(slurm, cluster_root: Path):
    project = cluster_root
    save_sweep(project, "slurm")
    good = [f"slurm-{g}" for g in GOOD]
    bad = f"slurm-{BAD}"
    added = add_hpc(project, "--json")
    assert added.exit_code == 0, added.output
    assert json.loads(added.stdout)["backend"] == "slurm"
    jobs = project / ".annealplan" / "hpc" / "jobs"

    def status(job_id: str) -> dict:
        path = jobs / job_id / "status.json"
        return json.loads(path.read_text()) if path.is_file() else {}

    # The first planner submits the sweep and follows it; it is killed once the first
    # job has succeeded, while the second still runs.
    first = start_planner(project, "slurm")
    try:
        wait_for(
            lambda: status(good[0]).get("state") == "succeeded",
            420,
            lambda: f"the first job ({status(good[0])}, {status(good[1])})",
            planner=first,
        )
        assert not JobState(status(good[1])["state"]).final
    finally:
        kill(first)
    slurm_ids = {j: (jobs / j / SLURM_ID_FILE).read_text() for j in [*good, bad]}

    # The restarted planner picks the same jobs up: nothing is submitted twice.
    second = annealplan(project, "sweep", "run", "slurm", "--poll", "0.5", "--json")
    assert second.exit_code == 1, second.output  # the bad job failed
    done = summary(second)
    assert done["succeeded"] == 2 and done["reused"] + done["ingested"] == 2
    [(failed_id, reason)] = [(f["job_id"], f["reason"]) for f in done["failed"]]
    assert failed_id == bad and "failed: " in reason and "missing.jsonl" in reason
    assert {j: (jobs / j / SLURM_ID_FILE).read_text() for j in slurm_ids} == slurm_ids
    names = [n for n in slurm.job_names() if n.startswith("annealplan-slurm-")]
    assert sorted(names) == sorted(f"annealplan-{j}" for j in slurm_ids)

    # Each result once: one run and one row per metric per run; a third run adds nothing.
    assert metric_rows(project, "tiny_mc/acc") == sorted(good)
    third = summary(annealplan(project, "sweep", "run", "slurm", "--json"))
    assert (third["ingested"], third["reused"]) == (0, 2)

    # The job verbs work on it as on a daemon, and name the backend.
    listed = json.loads(annealplan(project, "jobs", "list", "--json").stdout)
    assert {(r["job_id"], r["state"], r["backend"]) for r in listed} == {
        (good[0], "succeeded", "slurm"),
        (good[1], "succeeded", "slurm"),
        (bad, "failed", "slurm"),
    }
    shown = json.loads(annealplan(project, "jobs", "show", bad, "--json").stdout)
    assert shown["error"]["code"] == "materialize_failed" and shown["attempts"] == 1
    log = annealplan(project, "jobs", "logs", good[0])
    assert log.exit_code == 0 and "launch: " in log.stdout and "deepspeed" in log.stdout
    assert f"job {good[0]} succeeded" in log.stdout
    screens_show_backend(
        project,
        submitter(project, partition="debug"),
        "slurm",
        {good[0]: "ingested", good[1]: "ingested", bad: "failed"},
    )
    _, alive = psutil.wait_procs(processes_of(project / ".annealplan" / "hpc"), timeout=60)
    assert not alive, f"left behind: {alive}"
    assert not (left := shm_buffers(project / ".annealplan" / "hpc")), left


def test_cancel_a_queued_and_a_training_job(slurm, cluster_root: Path):
    project = cluster_root
    assert add_hpc(project, "--replace").exit_code == 0
    meta = sweep_meta(checkpoint_every_steps=10)
    source = Source("domain", "files", {"paths": ["data/domain.jsonl"]})
    specs = [AnnealSpec(f"cancel-{i}", "c", "domain", float(LONG_TOKENS), 0.5, i) for i in (0, 1)]
    running, waiting = (build_job(s, meta, lambda _: source) for s in specs)
    client = submitter(project, partition="debug")

    async def go():
        try:
            await client.submit(running)
            queued = await client.submit(waiting)  # two CPUs each: it waits for the first
            assert queued.state is JobState.QUEUED
            assert (await client.submit(waiting)).job_id == waiting.job_id  # idempotent
            cancelled = await client.cancel(waiting.job_id)
            assert cancelled.state is JobState.CANCELLED and cancelled.cancel_requested
            assert cancelled.error.message == "cancelled while queued"
            deadline = asyncio.get_running_loop().time() + 420
            while (await client.job(running.job_id)).state is not JobState.TRAINING:
                assert asyncio.get_running_loop().time() < deadline, "never trained"
                await asyncio.sleep(0.5)
            return await client.job(running.job_id)
        finally:
            await client.aclose()

    training = asyncio.run(go())
    assert training.attempts == 1
    folder = client.state / "jobs" / running.job_id
    procs = wait_for(
        lambda: [p for p in processes_of(folder) if "anneal.py" in " ".join(p.cmdline())],
        120,
        "the trainer to start",
    )
    first = annealplan(project, "jobs", "cancel", running.job_id, "--executor", "hpc", "--json")
    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout)["cancel_requested"] is True
    wait_for(lambda: job_state(project, running.job_id) == "cancelled", 90, "the cancel")
    again = json.loads(annealplan(project, "jobs", "cancel", running.job_id, "--json").stdout)
    assert again["state"] == "cancelled" and again["error"]["message"] == "cancelled on request"
    slurm_id = (folder / SLURM_ID_FILE).read_text()
    wait_for(
        lambda: slurm.run(
            "squeue", "--noheader", "--states=all", f"--jobs={slurm_id}", "--format=%T"
        ).strip() == "CANCELLED",
        60,
        "Slurm to record the batch job as cancelled",
    )  # fmt: skip
    batch = [
        p
        for p in processes_of(client.state)
        if f"--job-id {running.job_id}" in " ".join(p.cmdline())
    ]
    _, alive = psutil.wait_procs(procs + batch, timeout=30)
    assert not alive, f"left behind: {alive}"
    assert not processes_of(folder)


def test_a_multinode_job_gets_deepspeeds_hostfile_from_its_allocation(
    slurm, tmp_path: Path, monkeypatch
):
    assert allocation_hosts("gpu[07-09],cpu1") == ["gpu07", "gpu08", "gpu09", "cpu1"]
    assert hostfile_text(["gpu07", "gpu08"], 8) == "gpu07 slots=8\ngpu08 slots=8\n"
    folder = BatchFolder(tmp_path / "job")
    folder.path.mkdir()
    opts = BatchOptions(state_dir=tmp_path, root=tmp_path, job_id="job", gpus=4, nodes=2)
    monkeypatch.setenv("SLURM_JOB_NODELIST", "node[1-2]")
    hostfile = _hostfile(folder, opts)
    assert hostfile is not None and hostfile.read_text() == "node1 slots=4\nnode2 slots=4\n"
    cfg = WorkerConfig(tmp_path, tmp_path, "job", "t", gpus=4, hostfile=hostfile)
    assert world_size(cfg) == 8
    cmd = launch_command(cfg, tmp_path / "anneal.json", 29500)
    assert cmd[cmd.index("--hostfile") + 1] == str(hostfile) and "--num_gpus" not in cmd
    monkeypatch.setenv("SLURM_JOB_NODELIST", "node1")
    with pytest.raises(JobFailed, match="the allocation has 1 node"):
        _hostfile(folder, opts)
