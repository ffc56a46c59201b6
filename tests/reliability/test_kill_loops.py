"""T1–T3: ``kill -9`` the daemon at random moments, and the daemon plus the trainer between
two checkpoint shard writes; restart each time. The stub trainer's trace records every
attempt's starting step, every completed checkpoint, and any overlap of two trainers.

Loop counts: ``ANNEALPLAN_RELIABILITY_KILLS`` (CI default 5: one kill at each moment) and
``ANNEALPLAN_RELIABILITY_CKPT_KILLS`` (CI default 5)."""

from __future__ import annotations

import contextlib
import random
import signal
import time

import httpx
import pytest

from executors.journal import Journal
from executors.worker import JOURNAL_NAME

from .conftest import env_int
from .proc_helpers import job, job_processes, make_root, run_spec, stub_env, trace, wait_for

KILLS = env_int("ANNEALPLAN_RELIABILITY_KILLS", 5)
CKPT_KILLS = env_int("ANNEALPLAN_RELIABILITY_CKPT_KILLS", 5)
FINAL = ("succeeded", "failed", "cancelled")


@pytest.fixture
def proot(root):
    make_root(root)
    return root


def _check_trace(lines: list[str], every: int, total: int) -> None:
    """Each attempt resumed from the newest complete checkpoint; no overlap, no partials;
    training finished exactly once."""
    last_ckpt = 0
    for line in lines:
        kind, *rest = line.split()
        assert kind not in ("overlap", "partial"), line
        if kind == "ckpt":
            step = int(rest[0])
            assert step > last_ckpt, ("steps went back", lines)
            last_ckpt = step
        elif kind == "start":
            start = int(rest[2])
            # Resumed from the newest complete checkpoint: at most one interval lost.
            assert start == last_ckpt, ("did not resume from the newest checkpoint", lines)
    assert [x for x in lines if x.startswith("final")] == [f"final {total}"], lines


def _drain(d, job_ids: list[str], timeout: float = 180.0) -> dict[str, dict]:
    return wait_for(
        lambda: (
            (recs := {j: job(d, j) for j in job_ids})
            and all(r["state"] in FINAL for r in recs.values())
            and recs
        ),
        timeout,
        every=0.2,
    )


def _one_result_each(state, job_ids):
    journal = Journal(state / JOURNAL_NAME)
    try:
        for jid in job_ids:
            finals = [e for e in journal.events(jid) if e[1] in FINAL]
            assert len(finals) == 1, (jid, finals)
            assert journal.result(jid) is not None
    finally:
        journal.close()


def _half_written(ckpt) -> bool:
    """Some shards of a checkpoint are on disk, its COMPLETE marker is not."""
    if not ckpt.is_dir():
        return False
    for tag in ckpt.iterdir():
        if list(tag.glob("shard_*.bin")) and not (tag / "COMPLETE").exists():
            return True
    return False


# The moments T1 kills at, in turn; each kill waits for its moment, then a random delay.
MOMENTS = ("queued", "materializing", "mid-step", "mid-checkpoint", "evaluating")


def _at_moment(d, jobs: list[str], moment: str) -> bool:
    recs = [job(d, j) for j in jobs]
    if moment == "queued":
        return any(r["state"] == "queued" for r in recs)
    if moment == "materializing":
        return any(r["state"] == "materializing" for r in recs)
    if moment == "mid-step":
        return any(r["state"] == "training" and r["progress"]["step"] > 0 for r in recs)
    if moment == "mid-checkpoint":
        return any(_half_written(d.state / "jobs" / j / "ckpt") for j in jobs)
    return any(r["state"] == "evaluating" for r in recs)


def test_t1_t3_kill_the_daemon_at_random_moments(proot, daemon):
    seed = random.SystemRandom().randrange(10**6)  # differs per run; printed to replay
    rng = random.Random(seed)
    print(f"T1 seed {seed}, {KILLS} kills")
    env = stub_env(STUB_STEP_S="0.03", STUB_SHARD_S="0.04")
    d = daemon(**env)
    jobs: list[str] = []
    steps: dict[str, int] = {}

    def add_job() -> None:
        jid = f"k{len(jobs)}"
        steps[jid] = rng.choice((30, 40, 50))
        jobs.append(jid)
        r = httpx.post(f"{d.url}/v1/jobs", json=run_spec(jid, steps=steps[jid]), headers=d.headers)
        assert r.status_code == 201

    add_job()
    add_job()
    hit: list[str] = []
    best_step: dict[str, int] = {}
    for i in range(KILLS):
        moment = MOMENTS[i % len(MOMENTS)]
        if moment == "queued" or all(job(d, j)["state"] in FINAL for j in jobs):
            add_job()  # one job runs at a time: the newest waits in the queue
        try:
            wait_for(lambda m=moment, d=d: _at_moment(d, jobs, m), timeout=30, every=0.005)
            hit.append(moment)
        except AssertionError:
            hit.append(f"missed:{moment}")
        time.sleep(rng.uniform(0.0, 0.05))
        for jid in jobs:
            rec = job(d, jid)
            if rec["state"] not in FINAL:
                best_step[jid] = max(best_step.get(jid, 0), rec["progress"]["step"])
        d.kill9()
        d = daemon(**env)
    recs = _drain(d, jobs)
    for jid, rec in recs.items():
        assert rec["state"] == "succeeded", rec
        assert rec["progress"]["step"] >= best_step.get(jid, 0)
        _check_trace(trace(d.state, jid), every=10, total=steps[jid])
        # A final job's worker may still be exiting; nothing of it may linger past that.
        wait_for(lambda jid=jid: not job_processes(d.state, jid), 15)
    _one_result_each(d.state, jobs)
    print(f"T1 kill moments: {hit}")
    assert sum(not m.startswith("missed") for m in hit) >= KILLS * 0.8, hit


def test_t2_t3_kill_daemon_and_trainer_between_shard_writes(proot, daemon):
    env = stub_env(STUB_STEP_S="0.01", STUB_SHARD_S="0.08")
    d = daemon(**env)
    total = 10 * (CKPT_KILLS + 2)
    r = httpx.post(f"{d.url}/v1/jobs", json=run_spec("ck", steps=total, every=5), headers=d.headers)
    assert r.status_code == 201
    ckpt = d.state / "jobs" / "ck" / "ckpt"
    kills = 0
    while kills < CKPT_KILLS and job(d, "ck")["state"] not in FINAL:
        try:
            wait_for(lambda: _half_written(ckpt), timeout=60, every=0.005)
        except AssertionError:
            break
        procs = job_processes(d.state, "ck")
        d.kill9()
        for p in procs:  # the machine lost power: the whole job dies with the daemon
            with contextlib.suppress(Exception):
                p.send_signal(signal.SIGKILL)
        kills += 1
        d = daemon(**env)
    rec = _drain(d, ["ck"])["ck"]
    assert rec["state"] == "succeeded", rec
    assert kills >= min(CKPT_KILLS, 3), kills
    _check_trace(trace(d.state, "ck"), every=5, total=total)
    _one_result_each(d.state, ["ck"])
    print(f"T2: {kills} kills between shard writes")
