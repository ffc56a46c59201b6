"""The local backend's launcher: an executor daemon on 127.0.0.1, started by the planner.

It runs ``annealplan-executor serve`` as a child process (its own session) on a free port,
with a generated token in a 0600 file under ``<project>/.annealplan/executor``, the project
folder as its allow-listed root, and its journal beside the token. Its journal survives, so
stopping and starting it again resumes unfinished jobs.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from plugins.backends.http.client import ExecutorClient
from plugins.errors import ExecutorError

STATE_SUBDIR = Path(".annealplan") / "executor"


class LocalExecutor:
    """Start (and later stop) a loopback daemon rooted at the project folder.

    Use as a context manager; ``client()`` returns an :class:`ExecutorClient` for it.
    """

    name = "local"

    def __init__(
        self,
        project_dir: str | Path,
        *,
        root: str | Path | None = None,
        extra_args: Sequence[str] = (),
        start_timeout_s: float = 60.0,
        port: int | None = None,
        max_jobs: int = 1,
    ) -> None:
        self.project_dir = Path(project_dir).resolve()
        self.root = Path(root).resolve() if root else self.project_dir
        self.state_dir = self.project_dir / STATE_SUBDIR
        self.extra_args = tuple(extra_args)
        self.start_timeout_s = start_timeout_s
        self.proc: subprocess.Popen[bytes] | None = None
        self.port: int | None = None
        self.want_port = port  # None: any free port
        self.max_jobs = max_jobs
        self.token_file = self.state_dir / "token"

    @property
    def url(self) -> str:
        if self.port is None:
            raise ExecutorError("the local executor is not running")
        return f"http://127.0.0.1:{self.port}"

    def _token(self) -> str:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        if not self.token_file.is_file():
            fd = os.open(self.token_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_urlsafe(32))
        os.chmod(self.token_file, 0o600)
        return self.token_file.read_text().strip()

    def start(self) -> LocalExecutor:
        """Start the daemon and wait until it listens.

        Raises:
            ExecutorError: it exited or did not listen in time (its log tail is quoted).
        """
        self.token = self._token()
        port_file = self.state_dir / "port.json"
        port_file.unlink(missing_ok=True)
        log_path = self.state_dir / "daemon.log"
        cmd = [
            sys.executable,
            "-m",
            "executors.daemon",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.want_port or 0),
            "--max-jobs",
            str(self.max_jobs),
            "--token-file",
            str(self.token_file),
            "--root",
            str(self.root),
            "--state",
            str(self.state_dir),
            "--port-file",
            str(port_file),
            # An embedded daemon must not outlive the planner, even one killed by a signal.
            "--exit-with-parent",
            str(os.getpid()),
            *self.extra_args,
        ]
        with log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                cmd,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = log_path.read_text(errors="replace")[-600:]
                raise ExecutorError(f"the local executor exited at start: {tail.strip()}")
            if port_file.is_file():
                self.port = int(json.loads(port_file.read_text())["port"])
                return self
            time.sleep(0.1)
        self.stop()
        raise ExecutorError(
            f"the local executor did not start within {self.start_timeout_s:.0f} s; see {log_path}"
        )

    def client(self, **kwargs: Any) -> ExecutorClient:
        """A client for the running daemon (closing it leaves the daemon running)."""
        return ExecutorClient(self.url, self.token, name=self.name, **kwargs)

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM (the daemon requeues running jobs and stops its workers), then SIGKILL."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self.proc = None
        self.port = None

    def __enter__(self) -> LocalExecutor:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class LocalClient(ExecutorClient):
    """A client that owns the daemon it talks to: ``aclose()`` also stops the daemon."""

    def __init__(self, launcher: LocalExecutor, *, name: str = "", **kwargs: Any) -> None:
        super().__init__(launcher.url, launcher.token, name=name or launcher.name, **kwargs)
        self.launcher = launcher

    async def aclose(self) -> None:
        try:
            await super().aclose()
        finally:
            self.launcher.stop()
