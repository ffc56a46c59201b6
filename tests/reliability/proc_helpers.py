"""Helpers for the process-level tests: a root with a real tokenizer and data, the stub
trainer wired in through ``ANNEALPLAN_EXECUTOR_TRAINER``, and polling helpers."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import psutil

from tests.helpers.tiny import build_tokenizer, documents, write_jsonl

STUB = str(Path(__file__).with_name("stub_trainer.py"))


def make_root(root: Path) -> None:
    build_tokenizer(root / "model")
    write_jsonl(root / "data" / "a.jsonl", documents(200, seed=1))
    write_jsonl(root / "data" / "b.jsonl", documents(200, seed=2))


def run_spec(job_id: str, steps: int = 60, every: int = 10, **training) -> dict:
    """A job of about ``steps`` optimizer steps (seq_len 8, micro batch 1)."""
    half = steps * 8 // 2
    return {
        "job_id": job_id,
        "base_model": "model",
        "source": {"kind": "files", "config": {"paths": ["data/a.jsonl"]}, "tokens": half},
        "replay": {
            "source": {"kind": "files", "config": {"paths": ["data/b.jsonl"]}},
            "tokens": half,
        },
        "training": {"seq_len": 8, "micro_batch": 1, "checkpoint_every_steps": every, **training},
    }


def stub_env(**extra: str) -> dict[str, str]:
    return {"ANNEALPLAN_EXECUTOR_TRAINER": STUB, **extra}


def wait_for(pred, timeout: float = 120.0, every: float = 0.1):
    """Poll ``pred`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = pred()
        if got:
            return got
        time.sleep(every)
    raise AssertionError(f"condition not met in {timeout} s")


def job(d, job_id: str) -> dict:
    return httpx.get(f"{d.url}/v1/jobs/{job_id}", headers=d.headers, timeout=30).json()


def job_processes(state_dir: Path, job_id: str) -> list[psutil.Process]:
    """Live processes working on the job (worker or trainer), found by command line."""
    out = []
    marker = str(state_dir / "jobs" / job_id)
    state = f"--state {state_dir}"
    for p in psutil.process_iter(["cmdline", "status"]):
        try:
            cmd = " ".join(p.info["cmdline"] or [])
            if p.info["status"] == psutil.STATUS_ZOMBIE:
                continue
        except psutil.Error:
            continue
        if (f"--job-id {job_id}" in cmd and "executors.worker" in cmd and state in cmd) or (
            "stub_trainer.py" in cmd and marker in cmd
        ):
            out.append(p)
    return out


def trace(state_dir: Path, job_id: str) -> list[str]:
    f = state_dir / "jobs" / job_id / "trace.txt"
    return f.read_text().splitlines() if f.is_file() else []
