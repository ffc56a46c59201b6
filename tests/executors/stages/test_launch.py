"""The clean-up of the shared-memory buffers DeepSpeed leaves behind on CPU."""

from __future__ import annotations

import os
from pathlib import Path

from executors.stages import launch
from executors.stages.context import MASTER_PORT_FILE


def _buffer(folder: Path, port: int, rank: int, *, uid: int | None = None) -> Path:
    uid = os.getuid() if uid is None else uid
    path = folder / f"{launch.SHM_BUFFER}_{uid}_127.0.0.1_{port}_{rank}"
    path.write_bytes(b"\0" * 4096)
    return path


def test_a_launch_removes_its_own_buffers_only(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(launch, "SHM_DIR", tmp_path)
    ours = [_buffer(tmp_path, 29500, rank) for rank in (0, 1)]
    other_launch = _buffer(tmp_path, 29501, 0)
    longer_port = _buffer(tmp_path, 129500, 0)
    other_user = _buffer(tmp_path, 29500, 0, uid=os.getuid() + 1)
    assert sorted(launch.remove_shm_buffers(29500)) == sorted(ours)
    assert other_launch.exists() and other_user.exists() and longer_port.exists()


def test_a_job_folder_names_its_last_launch_for_whoever_cleans_up(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(launch, "SHM_DIR", tmp_path / "shm")
    (tmp_path / "shm").mkdir()
    job = tmp_path / "job"
    job.mkdir()
    assert launch.clean_up_launch(job) == []  # never launched
    killed = _buffer(tmp_path / "shm", 29600, 0)
    (job / MASTER_PORT_FILE).write_text("29600")
    assert launch.clean_up_launch(job) == [killed]
    assert not (job / MASTER_PORT_FILE).exists()
    (job / MASTER_PORT_FILE).write_text("not a port")
    assert launch.clean_up_launch(job) == []
