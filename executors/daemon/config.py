"""What a daemon is told: its configuration and its bearer token (read from a private file)."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

#: seconds a request body may take to arrive, by default
BODY_TIMEOUT_S = 30.0


class TokenFileError(Exception):
    """The token file is missing, empty, or readable by others."""


def read_token_file(path: Path) -> str:
    """Read the bearer token from a file only its owner may read.

    Raises:
        TokenFileError: missing, not a regular file, not ours, group/other bits set, or empty.
    """
    try:
        st = path.stat()
    except OSError as e:
        raise TokenFileError(f"cannot read the token file {path}: {e.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise TokenFileError(f"the token file {path} is not a regular file")
    if st.st_uid != os.getuid():
        raise TokenFileError(f"the token file {path} belongs to another user")
    if st.st_mode & 0o077:
        raise TokenFileError(
            f"the token file {path} is readable by others (mode {stat.S_IMODE(st.st_mode):o}); "
            f"run `chmod 600 {path}`"
        )
    token = path.read_text().strip()
    if len(token) < 16:
        raise TokenFileError(f"the token file {path} holds no token of at least 16 characters")
    return token


@dataclass(frozen=True, slots=True)
class DaemonConfig:
    """How the daemon serves and runs jobs."""

    root: Path
    state_dir: Path
    token: str
    max_jobs: int = 1
    max_queue: int = 256
    max_body_bytes: int = 1 << 20
    body_timeout_s: float = BODY_TIMEOUT_S
    """A request body must arrive within this (else 408 and the connection is closed)."""
    gpus: int = 1
    hostfile: Path | None = None
    launcher: str = "deepspeed"
    max_crashes: int = 2
    """A job whose worker crashes more often than this fails with code ``crashed``."""
    cancel_grace_s: float = 5.0
    heartbeat_timeout_s: float = 120.0
    worker_stall_s: float | None = None
    """Seconds without a worker's journal heartbeat (it beats every 2 s) before the job is
    failed as stalled; None: ``heartbeat_timeout_s`` + 30 s, slack for a busy journal."""
    peak_flops: float | None = None
    threads_per_job: int | None = None
    """CPU threads each job may use (``OMP_NUM_THREADS`` of its processes); None: the
    machine's cores divided by ``max_jobs``. Jobs that share cores with more threads than
    there are cores run many times slower (OpenMP threads spin waiting for each other)."""
    parent_pid: int | None = None
    """Shut down when this process (the planner that started an embedded daemon) is gone."""
    plugins: tuple[str, ...] = ()
    allowed_hosts: frozenset[str] = field(default_factory=frozenset)
    """Host header values accepted (empty: any, only with ``--allow-remote``)."""
    poll_s: float = 0.25
