"""The executor daemon: an HTTP API over the journal, and a supervisor that runs the jobs.

One concern per module:

- ``config``: :class:`DaemonConfig` and the bearer token's private file;
- ``supervisor``: the state-folder lock and the thread that spawns, watches and reaps the
  workers (``python -m executors.worker``);
- ``guard``: the ASGI middleware that checks Host, Origin, token and body size first;
- ``app``: the FastAPI routes over the journal (:func:`create_app`);
- ``cli``: ``annealplan-executor serve`` (click).

The names below are the daemon's public surface: the console script's entry point and
what tests and the planner's embedded executor use.
"""

from __future__ import annotations

from executors.daemon.app import create_app
from executors.daemon.cli import main
from executors.daemon.config import DaemonConfig, TokenFileError, read_token_file
from executors.daemon.supervisor import StateDirLocked, Supervisor, job_threads, lock_state_dir

__all__ = [
    "DaemonConfig",
    "StateDirLocked",
    "Supervisor",
    "TokenFileError",
    "create_app",
    "job_threads",
    "lock_state_dir",
    "main",
    "read_token_file",
]
