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
