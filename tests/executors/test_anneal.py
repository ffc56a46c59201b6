"""The trainer's guard around DeepSpeed's JIT op load."""

from __future__ import annotations

import fcntl
import threading
from pathlib import Path

import pytest

from executors import anneal


def test_a_baton_left_by_a_killed_trainer_is_removed(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    stale = [tmp_path / anneal.SHM_OP / "lock", tmp_path / "py311_cpu" / anneal.SHM_OP / "lock"]
    other = tmp_path / "some_other_op" / "lock"  # not ours to judge: left alone
    for f in (*stale, other):
        f.parent.mkdir(parents=True)
        f.touch()
    with anneal._op_build_guard():
        assert not any(f.exists() for f in stale)
    assert other.exists()


def test_the_guard_serialises_trainers_and_dies_with_its_holder(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    order: list[str] = []
    inside = threading.Event()
    release = threading.Event()

    def first() -> None:
        with anneal._op_build_guard():
            order.append("first in")
            inside.set()
            release.wait(10)
            order.append("first out")

    t = threading.Thread(target=first)
    t.start()
    assert inside.wait(10)
    # While the first holds it, the lock is taken (flock: per open file, so threads count).
    with (
        (tmp_path / ".annealplan-op-build.lock").open("w") as fh,
        pytest.raises(BlockingIOError),
    ):
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    release.set()
    with anneal._op_build_guard():
        order.append("second in")
    t.join(10)
    assert order == ["first in", "first out", "second in"]


def test_the_run_rate_ends_at_the_last_step_not_at_the_final_save(monkeypatch):
    # a clock the test moves: 1 s for the first step, 2 s per step after it, then a 30 s save
    now = [100.0]
    monkeypatch.setattr(anneal.time, "perf_counter", lambda: now[0])
    throughput = anneal._Throughput(tokens_per_step=1000)
    for seconds in (1.0, 2.0, 2.0, 2.0):
        now[0] += seconds
        throughput.step_done()
    now[0] += 30.0  # the final save_pretrained and the tokenizer
    # three steps after the first, 6 s: 500 tokens/s (the save would make it 83)
    assert throughput.overall(steps_run=4, train_seconds=37.0) == pytest.approx(500.0)


def test_a_run_of_one_step_falls_back_to_its_training_seconds():
    throughput = anneal._Throughput(tokens_per_step=1000)
    throughput.step_done()
    assert throughput.overall(steps_run=1, train_seconds=4.0) == pytest.approx(250.0)
    assert anneal._Throughput(1000).overall(steps_run=0, train_seconds=0.0) is None
