"""Reliability gaps closed after the first pass, each against the real parts:

- T3 across incarnations: two daemons on one state folder (the second refuses to start), and
  after a ``kill -9`` of the first a new one starts and the job never has two trainers
  (``ANNEALPLAN_RELIABILITY_T3_KILLS`` kills, CI default 1);
- T6 second half: after a long outage (fake clock) the planner's ``run_sweep`` ingests the
  result into a real DuckDB store exactly once, and a second sweep ingests nothing;
- T7: cancel while the job is evaluating (a real lm-eval task that holds), and a cancel that
  reached the journal just before the daemon died, honoured by the next daemon's recovery;
- T8: a stopped (SIGSTOP) *worker* is detected by its journal heartbeat and failed with a
  reason; its stopped process group is killed.

T16 (real lm-eval) and plugin failures at the app level have their own modules.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import psutil
import pytest

from executors.journal import Journal
from executors.protocol import CurationSpent, JobResult, JobState
from executors.worker import JOURNAL_NAME
from planner.dispatch.scheduler import run_sweep
from planner.domain import AnnealSpec, Source
from planner.store import open_store
from plugins.backends.http.client import ExecutorClient
from tests.helpers.tiny import build_causal_lm

from .conftest import TOKEN, env_int
from .proc_helpers import job, job_processes, make_root, run_spec, stub_env, trace, wait_for
from .test_process import GRACE_S, _cancel_and_check, _final, _submit

T3_KILLS = env_int("ANNEALPLAN_RELIABILITY_T3_KILLS", 1)


@pytest.fixture
def proot(root):
    make_root(root)
    return root


def _serve(root: Path, state: Path, token_file: Path, port_file: Path, **env: str):
    """``annealplan-executor serve`` as a user types it (not waited for)."""
    exe = Path(sys.executable).with_name("annealplan-executor")
    cmd = [
        str(exe),
        "serve",
        "--port",
        "0",
        "--port-file",
        str(port_file),
        "--token-file",
        str(token_file),
        "--root",
        str(root),
        "--state",
        str(state),
    ]
    return subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env={**os.environ, **env},
    )


def _refused(root: Path, state: Path, token_file: Path, holder_pid: int) -> None:
    """A second daemon on ``state`` exits 2 with one line that says what to do."""
    port_file = state.parent / "second-port.json"
    proc = _serve(root, state, token_file, port_file)
    try:
        _out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert proc.returncode == 2, (proc.returncode, err)
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1, err
    assert "already serves the state folder" in lines[0] and "--state" in lines[0]
    assert f"pid {holder_pid}" in lines[0]
    assert not port_file.exists(), "the refused daemon bound a port"


def _trainers(state: Path, job_id: str) -> list[psutil.Process]:
    out = []
    for p in job_processes(state, job_id):
        try:
            if "stub_trainer" in " ".join(p.cmdline()):
                out.append(p)
        except psutil.Error:
            pass  # it ended between the listing and this look
    return out


class _TrainerWatch:
    """Samples the job's live trainer processes in a thread; remembers the most at once."""

    def __init__(self, state: Path, job_id: str) -> None:
        self.state, self.job_id = state, job_id
        self.most = 0
        self.pids: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            found = []
            for p in _trainers(self.state, self.job_id):
                try:
                    if p.status() not in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD):
                        found.append(p.pid)
                except psutil.Error:
                    pass
            self.most = max(self.most, len(found))
            self.pids.update(found)
            self._stop.wait(0.05)

    def __enter__(self) -> _TrainerWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def test_t3_one_daemon_per_state_folder_and_the_lock_dies_with_it(proot, daemon, token_file):
    env = stub_env(STUB_STEP_S="0.05")
    d = daemon(**env)
    assert d.proc is not None
    _refused(proot, d.state, token_file, d.proc.pid)
    assert httpx.get(f"{d.url}/v1/health", headers=d.headers).status_code == 200
    total = 40 + 20 * T3_KILLS

    with _TrainerWatch(d.state, "t3") as watch:
        _submit(d, run_spec("t3", steps=total, every=10))
        seen = 5
        for _ in range(T3_KILLS):
            # Mid-training, and (after a restart) reported by the new attempt's trainer.
            seen = wait_for(
                lambda d=d, f=seen + 5: (s := job(d, "t3")["progress"]["step"]) >= f and s, 90
            )
            d.kill9()
            # The orphaned worker and trainer are alive, yet the lock went with the daemon.
            assert _trainers(d.state, "t3")
            d = daemon(**env)
        assert d.proc is not None
        _refused(proot, d.state, token_file, d.proc.pid)
        rec = _final(d, "t3", timeout=120)
    assert rec["state"] == "succeeded", rec
    assert watch.most == 1, f"{watch.most} trainers of one job at once"
    assert len(watch.pids) >= 1 + T3_KILLS, "a restart did not start a new trainer"
    lines = trace(d.state, "t3")
    assert not [x for x in lines if x.startswith(("overlap", "partial"))], lines
    assert [x for x in lines if x.startswith("final")] == [f"final {total}"], lines
    assert len([x for x in lines if x.startswith("start")]) == 1 + T3_KILLS, lines
    wait_for(lambda: not job_processes(d.state, "t3"), 15)


# -- T6: a long outage, then exactly-once ingestion through run_sweep ----------------------


class _Outage(httpx.AsyncBaseTransport):
    """Forwards to the daemon, except for a spell of fake time after the job is submitted,
    when every connection is refused; the first result reply after it is lost on the way.

    While the daemon is unreachable the job finishes on it (``on_down``), as a job would
    while the network is out.
    """

    def __init__(self, inner: httpx.AsyncBaseTransport, spell_s: float, on_down) -> None:
        self.inner = inner
        self.spell_s = spell_s
        self.on_down = on_down
        self.now = 0.0
        self.down_until: float | None = None
        self.refused = 0
        self.lost_result = False
        self.seen: list[tuple[str, str, bytes]] = []

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        await asyncio.sleep(0)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        self.seen.append((request.method, request.url.path, body))
        if self.down_until is not None and self.now < self.down_until:
            if self.refused == 0:
                self.on_down()
            self.refused += 1
            raise httpx.ConnectError("connection refused", request=request)
        resp = await self.inner.handle_async_request(request)
        if request.method == "POST" and self.down_until is None:
            self.down_until = self.now + self.spell_s
        if request.url.path.endswith("/result") and not self.lost_result:
            self.lost_result = True  # the daemon answered; the reply never arrives
            await resp.aread()
            raise httpx.ReadError("connection reset by peer", request=request)
        return resp


def _finish_as_a_worker(journal: Journal, job_id: str) -> JobResult:
    """What a worker records at the end of a job: the stages, then one result."""
    token = journal.claim(job_id)
    assert token is not None
    for state in (JobState.TRAINING, JobState.EVALUATING):
        assert journal.advance(job_id, token, state)
    result = JobResult(
        job_id=job_id,
        metrics={"tiny_mc/acc": 0.5, "tiny_mc/acc_norm": 0.25},
        continuous={"tiny_mc/logprob_correct": -3.5},
        params=1000,
        training_tokens=960,
        source_tokens=500,
        replay_tokens=500,
        training_flops=6.0 * 1000 * 960,
        curation=[
            CurationSpent(
                role="source",
                kind="files",
                tokens=500,
                cost=0.0,
                unit="usd",
                seconds=0.1,
                content_hash="c" * 64,
            )
        ],
        steps=120,
        train_seconds=1.0,
        eval_seconds=1.0,
        versions={"python": sys.version.split()[0]},
        seeds={"training": 0, "data": 0},
        data_hash="d" * 64,
        checkpoint_hash="e" * 64,
    )
    assert journal.finish(job_id, JobState.SUCCEEDED, token=token, result=result)
    return result


def _metric_rows(store, run_id: str) -> int:
    with store.transaction() as con:
        return con.execute("SELECT count(*) FROM metrics WHERE run_id = ?", [run_id]).fetchall()[0][
            0
        ]


async def test_t6_after_a_long_outage_run_sweep_ingests_exactly_once(app, tmp_path):
    asgi, fastapi_app = app
    journal = fastapi_app.state.journal
    store = open_store(tmp_path / "plan.duckdb")
    try:
        store.add_source(Source("domain", "files", {"paths": ["data/a.jsonl"]}))
        meta = {
            "base_model": "model",
            "replay": {"kind": "files", "config": {"paths": ["data/b.jsonl"]}},
            "compute_unit": "tokens",
        }
        store.save_experiment("out", [AnnealSpec("job-out", "out", "domain", 500.0, 0.5, 0)], meta)
        done: list[JobResult] = []
        outage = _Outage(
            httpx.ASGITransport(app=asgi),
            spell_s=30 * 60,
            on_down=lambda: done.append(_finish_as_a_worker(journal, "job-out")),
        )
        client = ExecutorClient(
            "http://127.0.0.1",
            TOKEN,
            transport=outage,
            sleep=outage.sleep,
            retries=8,
            backoff_s=0.5,
            backoff_max_s=60.0,
        )
        try:
            summary = await run_sweep(store, "out", [client], poll_s=5.0, sleep=outage.sleep)
        finally:
            await client.aclose()
        assert done and outage.lost_result
        print(f"T6: {outage.now / 60:.0f} fake minutes, {outage.refused} refused requests")
        assert outage.now >= 30 * 60 and outage.refused > 10, (outage.now, outage.refused)
        posts = [(p, b) for m, p, b in outage.seen if m == "POST"]
        assert len(posts) == 1, "the job was submitted again"
        assert (summary.submitted, summary.succeeded, summary.ingested) == (1, 1, 1)
        assert summary.failed == []
        (result,) = done
        assert [r.run_id for r in store.runs()] == ["job-out"]
        expected = len(result.metrics) + len(result.continuous)
        assert _metric_rows(store, "job-out") == expected
        assert store.run_meta("job-out")["checkpoint_hash"] == result.checkpoint_hash

        # A second sweep over the same jobs (the daemon reachable) ingests nothing new.
        async with ExecutorClient(
            "http://127.0.0.1", TOKEN, transport=httpx.ASGITransport(app=asgi)
        ) as again:
            second = await run_sweep(store, "out", [again], poll_s=0.01)
        assert (second.submitted, second.ingested, second.reused) == (0, 0, 1)
        assert [r.run_id for r in store.runs()] == ["job-out"]
        assert _metric_rows(store, "job-out") == expected
        assert len(journal.records()) == 1
    finally:
        store.close()


# -- T7: cancel while evaluating, and a cancel the next daemon's recovery honours ---------

HOLD_YAML = """task: hold
custom_dataset: !function utils.load_docs
test_split: test
output_type: multiple_choice
doc_to_text: "{{question}}"
doc_to_choice: "{{choices}}"
doc_to_target: "{{answer}}"
metric_list:
  - metric: acc
metadata:
  version: 1.0
"""

HOLD_UTILS = '''"""A task whose documents never arrive: evaluation holds until it is killed."""

import time
from pathlib import Path


def load_docs(**kwargs):
    Path(__file__).with_name("entered").touch()
    time.sleep(3600)
'''


def _hold_task(root: Path) -> Path:
    folder = root / "tasks" / "hold"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "hold.yaml").write_text(HOLD_YAML)
    (folder / "utils.py").write_text(HOLD_UTILS)
    return folder


def test_t7_cancel_while_evaluating_leaves_no_process_and_is_remembered(proot, daemon):
    hold = _hold_task(proot)
    model = build_causal_lm(proot / "lm", proot / "model")
    env = stub_env(STUB_FINAL_FROM=str(model))
    d = daemon(**env)
    body = run_spec("c-eval", steps=10)
    body["evaluation"] = {"tasks": ["hold"], "task_dirs": ["tasks/hold"], "limit": 2}
    _submit(d, body)
    wait_for(lambda: job(d, "c-eval")["state"] == "evaluating", 120)
    # lm-eval loaded the model and is inside the task's dataset loader: evaluation proper.
    wait_for(lambda: (hold / "entered").exists(), 120)
    assert job(d, "c-eval")["state"] == "evaluating"
    _cancel_and_check(d, "c-eval")
    d.stop()
    d2 = daemon(**env)
    rec = job(d2, "c-eval")
    assert rec["state"] == "cancelled" and rec["error"]["code"] == "cancelled"
    assert not job_processes(d2.state, "c-eval")
    assert httpx.post(f"{d2.url}/v1/jobs", json=body, headers=d2.headers).json()["state"] == (
        "cancelled"
    )


def test_t7_a_cancel_recorded_just_before_the_daemon_died_is_honoured_on_recovery(proot, daemon):
    env = stub_env(STUB_STEP_S="0.2")
    d = daemon(**env)
    _submit(d, run_spec("c-crash", steps=300))
    wait_for(lambda: job(d, "c-crash")["progress"]["step"] >= 2, 90)
    stale = job_processes(d.state, "c-crash")
    assert stale
    # The DELETE reached the journal, the daemon died before its supervisor acted: stop it,
    # record the cancel as its handler does, then kill it.
    assert d.proc is not None
    os.kill(d.proc.pid, signal.SIGSTOP)
    journal = Journal(d.state / JOURNAL_NAME)
    try:
        assert journal.request_cancel("c-crash").cancel_requested
    finally:
        journal.close()
    d.kill9()
    assert job_processes(d.state, "c-crash"), "the job's processes died with the daemon"
    t0 = time.monotonic()
    d2 = daemon(**env)
    rec = wait_for(lambda: (j := job(d2, "c-crash"))["state"] == "cancelled" and j, GRACE_S + 5)
    assert time.monotonic() - t0 <= GRACE_S + 5 + 5  # the daemon's own start-up included
    assert rec["error"]["code"] == "cancelled" and rec["attempts"] == 1
    wait_for(lambda: not job_processes(d2.state, "c-crash"), GRACE_S + 5)
    assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in stale)
    r = httpx.delete(f"{d2.url}/v1/jobs/c-crash", headers=d2.headers)
    assert r.status_code == 200 and r.json()["state"] == "cancelled"
    d2.stop()
    d3 = daemon(**env)
    assert job(d3, "c-crash")["state"] == "cancelled"
    time.sleep(1.0)  # a few supervisor ticks: nothing restarts it
    assert job(d3, "c-crash")["attempts"] == 1 and not job_processes(d3.state, "c-crash")


# -- T8: the worker itself stops ------------------------------------------------------------


def test_t8_a_stopped_worker_is_detected_and_its_stopped_group_killed(proot, daemon):
    d = daemon("--worker-stall-timeout", "5", **stub_env(STUB_STEP_S="0.2"))
    _submit(d, run_spec("wstall", steps=400))
    wait_for(lambda: job(d, "wstall")["progress"]["step"] >= 2, 90)
    procs = job_processes(d.state, "wstall")
    workers = [p for p in procs if "executors.worker" in " ".join(p.cmdline())]
    assert len(workers) == 1 and len(procs) == 2, procs
    t0 = time.monotonic()
    os.kill(workers[0].pid, signal.SIGSTOP)
    rec = _final(d, "wstall", timeout=90)
    waited = time.monotonic() - t0
    assert rec["state"] == "failed" and rec["error"]["code"] == "stalled", rec
    assert "worker sent no heartbeat" in rec["error"]["message"]
    # Killed promptly: SIGCONT lets the stopped worker act on SIGTERM, no grace sat out.
    wait_for(lambda: not job_processes(d.state, "wstall"), GRACE_S + 5)
    for p in procs:
        assert not p.is_running() or p.status() == psutil.STATUS_ZOMBIE, p
    assert waited < 5 + 15, waited
    print(f"T8 worker stall detected and killed after {waited:.1f} s")


GRACEFUL = """
import pathlib, signal, sys, time
def bye(*_):
    pathlib.Path(sys.argv[1]).write_text("graceful")
    sys.exit(0)
signal.signal(signal.SIGTERM, bye)
pathlib.Path(sys.argv[1] + ".ready").touch()
while True:
    time.sleep(0.05)
"""


def test_t8_a_stopped_group_gets_its_sigterm(tmp_path):
    """A stopped process only acts on SIGTERM once continued: the daemon's group kill
    continues it, so it shuts down gracefully instead of sitting out the grace period."""
    from executors.processes import kill_process_tree

    marker = tmp_path / "marker"
    proc = subprocess.Popen([sys.executable, "-c", GRACEFUL, str(marker)], start_new_session=True)
    try:
        wait_for(lambda: Path(str(marker) + ".ready").exists(), 30, every=0.02)
        os.kill(proc.pid, signal.SIGSTOP)
        wait_for(lambda: psutil.Process(proc.pid).status() == psutil.STATUS_STOPPED, 10)
        kill_process_tree(proc.pid, grace_s=20, whole_group=True)
        assert proc.wait(timeout=30) == 0, "it died by SIGKILL, not by its SIGTERM handler"
        assert marker.read_text() == "graceful"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
