"""An example third-party executor backend: ``background``, each anneal one detached
process on this machine.

It is the smallest complete backend, written as one for SkyPilot or Kubernetes would be:

- a pydantic ``Settings`` model (unknown keys are refused), and ``check`` for what
  ``annealplan executors add`` should verify;
- ``connect`` returning a :class:`~plugins.contract.JobSubmitter`: ``submit`` under the
  client's job id (idempotent), ``job``/``jobs``, ``log``, ``result``, ``cancel``,
  ``health``, ``aclose``;
- the job itself is ``python -m executors.batch``, which runs the same stages as the daemon
  and records the job's state and result in the job's folder
  (:class:`executors.batch.BatchFolder`); :mod:`plugins.backends.scheduled` gives the
  daemon's replies (404, 409, log chunks).

For SkyPilot, ``submit`` would run ``sky jobs launch`` with that command, ``cancel``
``sky jobs cancel`` and ``log`` ``sky jobs logs``; for Kubernetes, a ``Job`` object per
anneal, ``kubectl logs`` and a delete. Here a process group and its pid do it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from pydantic import Field

from executors.batch import BatchFolder, new_record
from executors.protocol import (
    PROTOCOL_VERSION,
    AnnealJobSpec,
    Health,
    JobError,
    JobRecord,
    JobResult,
    JobState,
    LogChunk,
)
from plugins.backends import scheduled
from plugins.contract import BackendSettings, ExecutorBackend
from plugins.errors import ConfigError
from plugins.hookspecs import hookimpl


class BackgroundSettings(BackendSettings):
    root: str
    """The folder jobs read and write (their paths are relative to it)."""
    python: str = Field(default_factory=lambda: sys.executable)
    """The Python that runs the jobs."""


class BackgroundSubmitter:
    backend = "background"

    def __init__(self, settings: BackgroundSettings, name: str) -> None:
        self.name = name
        self.url = f"background processes under {settings.root}"
        self.settings = settings
        self.root = Path(settings.root).expanduser().resolve()
        self.state = scheduled.state_dir(self.root, None, name)

    def _folder(self, job_id: str) -> BatchFolder:
        folder = BatchFolder(self.state / "jobs" / job_id)
        if not folder.spec_file.is_file():
            raise scheduled.no_such_job(self.name, job_id)
        return folder

    @staticmethod
    def _alive(folder: BatchFolder) -> bool:
        try:
            pid = int((folder.path / "pid").read_text())
        except (OSError, ValueError):
            return False
        with contextlib.suppress(ChildProcessError):
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return False  # our own child, just reaped
        try:
            os.kill(pid, 0)
        except OSError:
            return False
        return True

    def _record(self, folder: BatchFolder) -> JobRecord:
        record = folder.read_status()
        assert record is not None
        if record.state.final or self._alive(folder):
            return record
        # The process is gone without a final record (killed): say so, once.
        record = folder.read_status() or record
        if not record.state.final:
            record = record.model_copy(
                update={
                    "state": JobState.FAILED,
                    "error": JobError(code="gone", message="the job's process died; see its log"),
                }
            )
            folder.write_status(record)
        return record

    async def health(self) -> Health:
        return Health(ok=True, protocol=PROTOCOL_VERSION)

    async def submit(self, spec: AnnealJobSpec) -> JobRecord:
        folder = BatchFolder(self.state / "jobs" / spec.job_id)
        kept = folder.read_spec()
        if kept is not None:
            if kept.spec_hash() != spec.spec_hash():
                raise scheduled.conflict(self.name, spec.job_id)
            return self._record(folder)
        folder.path.mkdir(parents=True, exist_ok=True)
        folder.write_status(new_record(spec))
        folder.write_spec(spec)  # last: a folder with a spec is a submitted job
        command = [
            self.settings.python, "-m", "executors.batch", "--state", str(self.state),
            "--root", str(self.root), "--job-id", spec.job_id,
        ]  # fmt: skip
        try:
            with folder.log.open("ab") as log:
                proc = subprocess.Popen(
                    command,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    cwd=self.root,
                    start_new_session=True,  # its own group: cancel stops the whole tree
                )
        except OSError as e:
            shutil.rmtree(folder.path, ignore_errors=True)
            raise ConfigError(f"background: cannot start {self.settings.python}: {e}") from None
        (folder.path / "pid").write_text(str(proc.pid))
        return self._record(folder)

    async def job(self, job_id: str) -> JobRecord:
        return self._record(self._folder(job_id))

    async def jobs(self, state: JobState | None = None) -> list[JobRecord]:
        base = self.state / "jobs"
        folders = [BatchFolder(p) for p in sorted(base.iterdir())] if base.is_dir() else []
        records = [self._record(f) for f in folders if f.spec_file.is_file()]
        return [r for r in records if state is None or r.state is state]

    async def result(self, job_id: str) -> JobResult:
        folder = self._folder(job_id)
        return scheduled.result_or_refusal(self.name, self._record(folder), folder.read_result())

    async def log(self, job_id: str, offset: int = 0, limit: int = 65536) -> LogChunk:
        folder = self._folder(job_id)
        final = self._record(folder).state.final
        return scheduled.file_chunk(folder.log, offset, limit, final_state=final)

    async def cancel(self, job_id: str) -> JobRecord:
        folder = self._folder(job_id)
        record = self._record(folder)
        if not record.state.final:
            folder.request_cancel()
            with contextlib.suppress(OSError, ValueError):
                # the batch job records "cancelled" when SIGTERM comes after a request
                os.killpg(int((folder.path / "pid").read_text()), signal.SIGTERM)
        return self._record(folder).model_copy(update={"cancel_requested": True})

    async def aclose(self) -> None:
        return None


class BackgroundBackend(ExecutorBackend):
    name = "background"
    description = "each anneal a detached process on this machine (example third-party backend)"
    Settings = BackgroundSettings

    def check(self, settings: BackendSettings) -> None:
        assert isinstance(settings, BackgroundSettings)
        if not Path(settings.root).expanduser().is_dir():
            raise ConfigError(f"background: root {settings.root} is not a folder; pass --root")

    def where(self, settings: BackendSettings) -> str:
        assert isinstance(settings, BackgroundSettings)
        return f"processes under {settings.root}"

    def connect(self, settings, *, name, project_dir, retries=None) -> BackgroundSubmitter:
        assert isinstance(settings, BackgroundSettings)
        return BackgroundSubmitter(settings, name)


@hookimpl
def register_executor_backends(register):
    register(BackgroundBackend())
