"""Process-level reliability with the real daemon (``annealplan-executor serve``) and real
workers, the stub trainer standing in for DeepSpeed: T7 cancel, T8 stall, T9 logs across a
restart, T16 result provenance, T17 crash retries."""

from __future__ import annotations

import os
import signal
import time

import httpx
import psutil
import pytest

from executors.journal import Journal
from executors.worker import JOURNAL_NAME

from .proc_helpers import job, job_processes, make_root, run_spec, stub_env, trace, wait_for

GRACE_S = 5.0  # the daemon's cancel grace (DaemonConfig.cancel_grace_s)


@pytest.fixture
def proot(root):
    make_root(root)
    return root


def _submit(d, body: dict) -> dict:
    r = httpx.post(f"{d.url}/v1/jobs", json=body, headers=d.headers, timeout=30)
    assert r.status_code in (200, 201), r.text
    return r.json()


def _final(d, job_id: str, timeout: float = 120.0) -> dict:
    return wait_for(
        lambda: (j := job(d, job_id))["state"] in ("succeeded", "failed", "cancelled") and j,
        timeout,
    )


def test_t16_a_job_succeeds_with_versions_seeds_and_hashes(proot, daemon):
    d = daemon(**stub_env())
    _submit(d, run_spec("ok", steps=30))
    rec = _final(d, "ok")
    assert rec["state"] == "succeeded", rec
    res = httpx.get(f"{d.url}/v1/jobs/ok/result", headers=d.headers).json()
    assert res["versions"]["python"] and res["versions"]["annealplan_git"]
    assert {"training", "data"} <= set(res["seeds"])
    assert len(res["data_hash"]) == 64 and res["checkpoint_hash"]
    assert res["steps"] == 30
    # T11: the bearer token appears in no log (the daemon's own, the job's, the journal's).
    from .conftest import TOKEN

    d.stop()
    logs = [d.stderr_path, d.state / "jobs" / "ok" / "log.txt"]
    for f in logs:
        assert TOKEN not in f.read_text(errors="replace"), f
    journal = Journal(d.state / JOURNAL_NAME)
    try:
        assert all(TOKEN not in detail for _, _, detail in journal.events("ok"))
    finally:
        journal.close()
    lines = trace(d.state, "ok")
    assert [x.split()[0] for x in lines].count("start") == 1 and lines[-1] == "final 30"


def test_t9_logs_survive_a_restart(proot, daemon):
    d = daemon(**stub_env())
    _submit(d, run_spec("logged", steps=20))
    _final(d, "logged")
    before = httpx.get(f"{d.url}/v1/jobs/logged/log", headers=d.headers).json()
    assert "succeeded" in before["text"] and before["final"]
    d.kill9()
    d2 = daemon(**stub_env())
    after = httpx.get(f"{d2.url}/v1/jobs/logged/log", headers=d2.headers).json()
    assert after["text"] == before["text"] and after["final"]
    # Paging from an offset gives the rest, byte-exact.
    mid = len(before["text"].encode()) // 2
    part = httpx.get(
        f"{d2.url}/v1/jobs/logged/log", params={"offset": mid}, headers=d2.headers
    ).json()
    assert part["offset"] == mid and before["text"].encode()[mid:] == part["text"].encode()


def _cancel_and_check(d, job_id: str) -> None:
    t0 = time.monotonic()
    r1 = httpx.delete(f"{d.url}/v1/jobs/{job_id}", headers=d.headers, timeout=30)
    assert r1.status_code == 200
    rec = wait_for(lambda: (j := job(d, job_id))["state"] == "cancelled" and j, GRACE_S + 5)
    assert time.monotonic() - t0 <= GRACE_S + 5
    assert rec["error"]["code"] == "cancelled"
    wait_for(lambda: not job_processes(d.state, job_id), GRACE_S + 5)
    r2 = httpx.delete(f"{d.url}/v1/jobs/{job_id}", headers=d.headers, timeout=30)
    assert r2.status_code == 200 and r2.json()["state"] == "cancelled"


def test_t7_cancel_in_every_state_and_across_restarts(proot, daemon):
    d = daemon(**stub_env(STUB_STEP_S="0.2"))
    # training (slow steps), and a queued one behind it (one job at a time)
    _submit(d, run_spec("c-train", steps=200))
    _submit(d, run_spec("c-queued", steps=20))
    _cancel_and_check(d, "c-queued")
    wait_for(lambda: job(d, "c-train")["progress"]["step"] >= 2, 90)
    _cancel_and_check(d, "c-train")
    # materializing: cancel right after the worker starts
    _submit(d, run_spec("c-mat", steps=20))
    wait_for(lambda: job(d, "c-mat")["state"] == "materializing", 30, every=0.02)
    _cancel_and_check(d, "c-mat")
    # during restart recovery: the daemon dies mid-training, the job is cancelled as the
    # next daemon comes up (its stale worker still running)
    _submit(d, run_spec("c-recover", steps=200))
    wait_for(lambda: job(d, "c-recover")["progress"]["step"] >= 2, 90)
    assert job_processes(d.state, "c-recover")
    d.kill9()
    d2 = daemon(**stub_env(STUB_STEP_S="0.2"))
    _cancel_and_check(d2, "c-recover")
    # remembered across restarts
    d2.stop()
    d3 = daemon(**stub_env(STUB_STEP_S="0.2"))
    for jid in ("c-queued", "c-train", "c-mat", "c-recover"):
        assert job(d3, jid)["state"] == "cancelled", jid
        assert not job_processes(d3.state, jid)
        r = httpx.post(
            f"{d3.url}/v1/jobs",
            json=run_spec(jid, steps=20 if jid in ("c-queued", "c-mat") else 200),
            headers=d3.headers,
        )
        assert r.status_code == 200 and r.json()["state"] == "cancelled"


def test_t8_a_stopped_trainer_is_detected_and_failed_with_a_reason(proot, daemon):
    d = daemon("--heartbeat-timeout", "3", **stub_env(STUB_STEP_S="0.2"))
    _submit(d, run_spec("stall", steps=300))
    wait_for(lambda: job(d, "stall")["progress"]["step"] >= 2, 90)
    trainers = [
        p for p in job_processes(d.state, "stall") if "stub_trainer" in " ".join(p.cmdline())
    ]
    assert len(trainers) == 1
    os.kill(trainers[0].pid, signal.SIGSTOP)
    rec = _final(d, "stall", timeout=60)
    assert rec["state"] == "failed" and rec["error"]["code"] == "stalled", rec
    assert "heartbeat" in rec["error"]["message"]
    wait_for(lambda: not job_processes(d.state, "stall"), 15)
    assert not psutil.pid_exists(trainers[0].pid) or trainers[0].status() == psutil.STATUS_ZOMBIE


def test_t17_validation_failures_are_not_retried_and_crashes_are_capped(proot, daemon):
    d = daemon(**stub_env(ANNEALPLAN_EXECUTOR_TRAINER=str(proot / "no-such-trainer.py")))
    # A job that cannot make one step: a validation failure, one attempt only.
    _submit(d, run_spec("tiny", steps=4, micro_batch=4096))
    rec = _final(d, "tiny")
    assert rec["state"] == "failed" and rec["error"]["code"] == "too_few_tokens"
    assert rec["attempts"] == 1
    # A trainer that crashes every time: retried max_crashes (2) times, then failed.
    _submit(d, run_spec("crashy", steps=10))
    rec = _final(d, "crashy", timeout=180)
    assert rec["state"] == "failed" and rec["error"]["code"] == "crashed", rec
    assert rec["attempts"] == 3
    journal = Journal(d.state / JOURNAL_NAME)
    try:
        retries = [e for e in journal.events("crashy") if e[1] == "retry"]
        assert len(retries) == 2 and all("exited with code" in e[2] for e in retries)
        assert not [e for e in journal.events("tiny") if e[1] in ("retry", "requeued")]
    finally:
        journal.close()


def test_t15_a_full_disk_fails_the_job_cleanly_and_the_previous_checkpoint_loads(proot, daemon):
    d = daemon(**stub_env(STUB_FULL_DISK_AT="20"))
    _submit(d, run_spec("full", steps=40, every=10))
    rec = _final(d, "full", timeout=180)
    assert rec["state"] == "failed" and rec["error"]["code"] == "crashed", rec
    lines = trace(d.state, "full")
    starts = [int(x.split()[3]) for x in lines if x.startswith("start")]
    # Every retry resumed from the checkpoint written before the disk filled.
    assert starts[0] == 0 and starts[1:] and all(s == 10 for s in starts[1:]), lines
    assert not [x for x in lines if x.startswith(("partial", "overlap", "final"))], lines
    ckpt = d.state / "jobs" / "full" / "ckpt" / "step_10"
    assert (ckpt / "COMPLETE").is_file() and len(list(ckpt.glob("shard_*.bin"))) == 4
    log = httpx.get(f"{d.url}/v1/jobs/full/log", headers=d.headers).json()["text"]
    assert "No space left on device" in log
    wait_for(lambda: not job_processes(d.state, "full"), 15)
