"""``SlurmSubmitter``: the ``slurm`` backend's :class:`~plugins.contract.JobSubmitter`.

One anneal is one batch job (``sbatch``) that runs ``python -m executors.batch``: the
daemon's stages for one job. Its folder, ``<state>/jobs/<job_id>`` on the filesystem the
cluster shares, holds the spec, the job's record and result (written by the job), its log
(Slurm's ``--output``) and the Slurm job id. Status reads that record and asks ``squeue``
whether the batch job still runs; a job that ended without a final record (killed at its
time limit, a node that failed) is recorded as failed with Slurm's state, or as
cancelled when a cancel was requested. Cancel is ``scancel``.

Idempotency is the daemon's: the job id names the folder, so submitting the same spec
again returns the same job, and another spec under that id is a conflict. A submission
either completes (folder, then ``sbatch``, then the Slurm id) or leaves nothing: when
``sbatch`` refuses, the folder goes too. A planner stopped between ``sbatch`` and writing
the id finds its batch job again by name.
"""

from __future__ import annotations

import asyncio
import shlex
import shutil
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

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
from plugins.backends.slurm.commands import (
    JobInfo,
    Slurm,
    SlurmMissing,
    SlurmRefused,
    SlurmUnavailable,
)
from plugins.errors import ConfigError, did_you_mean

if TYPE_CHECKING:
    from plugins.backends.slurm import SlurmSettings

_T = TypeVar("_T")
#: the file in a job's folder that holds its Slurm job id
SLURM_ID_FILE = "slurm_id"
#: the batch job's script, kept in the job's folder for people to read
SCRIPT_FILE = "job.sh"


def job_name(job_id: str) -> str:
    """The Slurm job name of an annealplan job (how a lost submission is found again)."""
    return f"annealplan-{job_id}"


def check_cluster(settings: SlurmSettings, slurm: Slurm) -> None:
    """What must hold before anything is submitted: Slurm's commands are here, the
    controller answers, the partition exists, the root is a folder.

    Raises:
        ConfigError: naming the setting at fault and what to do.
    """
    for command in ("sbatch", "squeue", "scancel", "sinfo"):
        try:
            slurm.which(command)
        except SlurmMissing as e:
            hint = (
                "fix --bin-dir (the folder that holds Slurm's commands)"
                if settings.bin_dir
                else "run annealplan where jobs can be submitted (a login node), or name "
                "the folder that holds Slurm's commands with --bin-dir"
            )
            raise ConfigError(f"slurm: {e}; {hint}") from None
    try:
        partitions = slurm.partitions()
    except (SlurmUnavailable, SlurmRefused) as e:
        raise ConfigError(
            f"slurm: cannot list the cluster's partitions ({e}); check that the controller "
            "runs and that SLURM_CONF names this cluster's slurm.conf"
        ) from None
    if settings.partition is not None and settings.partition not in partitions:
        raise ConfigError(
            f"slurm: partition {settings.partition!r} is not on this cluster (sinfo lists "
            f"{', '.join(partitions) or 'none'}){did_you_mean(settings.partition, partitions)}; "
            "pass --partition NAME"
        )
    root = Path(settings.root).expanduser()
    if not root.is_dir():
        raise ConfigError(
            f"slurm: root {settings.root} is not a folder; create it on the filesystem the "
            "cluster's nodes share, or pass --root FOLDER"
        )


def sbatch_args(settings: SlurmSettings, job_id: str, folder: BatchFolder) -> list[str]:
    """``sbatch``'s options for one job (the settings' resources, the job's log)."""
    args = [
        f"--job-name={job_name(job_id)}",
        f"--output={folder.log}",
        "--open-mode=append",
        f"--chdir={Path(settings.root).expanduser()}",
        f"--nodes={settings.nodes}",
        "--ntasks-per-node=1",
    ]
    if settings.partition:
        args.append(f"--partition={settings.partition}")
    if settings.gpus_per_node:
        args.append(f"--gpus-per-node={settings.gpus_per_node}")
    if settings.cpus_per_task:
        args.append(f"--cpus-per-task={settings.cpus_per_task}")
    if settings.account:
        args.append(f"--account={settings.account}")
    if settings.time:
        args.append(f"--time={settings.time}")
    return [*args, *settings.sbatch_args]


def job_script(settings: SlurmSettings, job_id: str, state: Path, args: list[str]) -> str:
    """The batch script: the settings' set-up lines, then the worker's stages for one job."""
    command = [
        settings.python,
        "-m",
        "executors.batch",
        "--state",
        str(state),
        "--root",
        str(Path(settings.root).expanduser()),
        "--job-id",
        job_id,
        "--gpus",
        str(max(1, settings.gpus_per_node)),
        "--nodes",
        str(settings.nodes),
    ]
    lines = [
        "#!/bin/bash",
        f"# annealplan job {job_id}, submitted as:",
        f"#   sbatch {shlex.join(args)} {SCRIPT_FILE}",
        "set -e",
    ]
    if settings.setup:
        lines.append(settings.setup)
    lines.append("exec " + shlex.join(command))
    return "\n".join(lines) + "\n"


class SlurmSubmitter:
    """Runs jobs as Slurm batch jobs; the job folders live under ``state``."""

    backend = "slurm"

    def __init__(
        self,
        settings: SlurmSettings,
        *,
        name: str,
        state: Path,
        admit: Callable[[AnnealJobSpec], None] | None = None,
    ) -> None:
        self.settings = settings
        self.name = name
        self.state = state
        self.url = f"slurm:{settings.partition or '(default partition)'}"
        self.slurm = Slurm(settings.bin_dir)
        self._admit = admit

    # -- plumbing -------------------------------------------------------------------------

    async def _call(self, fn: Callable[..., _T], *args: Any) -> _T:
        """Run a blocking Slurm command in a thread; its failures as the daemon's replies."""
        try:
            return await asyncio.to_thread(fn, *args)
        except SlurmUnavailable as e:
            raise scheduled.unavailable(self.name, f"Slurm does not answer: {e}") from None

    def folder(self, job_id: str) -> BatchFolder:
        return BatchFolder(self.state / "jobs" / job_id)

    @staticmethod
    def slurm_id(folder: BatchFolder) -> str | None:
        try:
            return (folder.path / SLURM_ID_FILE).read_text().strip() or None
        except FileNotFoundError:
            return None

    def _known(self, job_id: str) -> BatchFolder:
        folder = self.folder(job_id)
        if not folder.spec_file.is_file():
            raise scheduled.no_such_job(self.name, job_id)
        return folder

    def _record(self, folder: BatchFolder, info: JobInfo | None) -> JobRecord:
        """The job's record from what it wrote and what Slurm says of its batch job."""
        record = folder.read_status()
        if record is None:
            spec = folder.read_spec()
            assert spec is not None
            record = new_record(spec)
        cancel = folder.cancel_requested
        if record.state.final or (info is not None and info.alive):
            return record.model_copy(update={"cancel_requested": cancel})
        if info is None and self.slurm_id(folder) is None:
            return record  # being submitted right now
        # The batch job ended (or Slurm forgot it) without a final record, unless it
        # wrote one since we read it.
        again = folder.read_status()
        if again is not None and again.state.final:
            return again.model_copy(update={"cancel_requested": cancel})
        now = datetime.now(UTC)
        if cancel:
            error = JobError(code="cancelled", message="cancelled on request")
            state = JobState.CANCELLED
        else:
            how = f"in state {info.state}" if info else "and left the queue"
            why = f" ({info.reason})" if info and info.reason not in ("", "None") else ""
            code = f"slurm_{info.state.lower()}" if info else "slurm_gone"
            error = JobError(
                code=code,
                message=f"Slurm job {self.slurm_id(folder)} ended {how}{why} before the "
                f"job finished; see its log ({folder.log})",
            )
            state = JobState.FAILED
        final = record.model_copy(
            update={
                "state": state,
                "error": error,
                "cancel_requested": cancel,
                "updated_at": now,
                "finished_at": now,
            }
        )
        folder.write_status(final)
        return folder.read_status() or final

    async def _infos(self, folders: list[BatchFolder]) -> dict[str, JobInfo]:
        ids = []
        for f in folders:
            record = f.read_status()
            if (record is None or not record.state.final) and (sid := self.slurm_id(f)):
                ids.append(sid)
        return await self._call(self.slurm.jobs, ids)

    # -- the protocol ---------------------------------------------------------------------

    async def health(self) -> Health:
        await self._call(self.slurm.partitions)
        return Health(ok=True, protocol=PROTOCOL_VERSION)

    async def submit(self, spec: AnnealJobSpec) -> JobRecord:
        """Submit one job as a batch job (idempotent by job id).

        Raises:
            ConfigError: Slurm's commands are missing, the partition is unknown, or
                ``sbatch`` refused the job (nothing is left behind).
            ExecutorReplyError: 409 the id exists with another spec; 422 the job would
                fail for certain (the daemon's admission: a path, a source kind or config).
        """
        folder = self.folder(spec.job_id)
        kept = folder.read_spec()
        if kept is not None:
            if kept.spec_hash() != spec.spec_hash():
                raise scheduled.conflict(self.name, spec.job_id)
            if self.slurm_id(folder) is not None:
                return await self.job(spec.job_id)
            # Submitted by a planner that stopped before it wrote the Slurm id?
            found = await self._call(self.slurm.named, job_name(spec.job_id))
            if found:
                (folder.path / SLURM_ID_FILE).write_text(found[-1])
                return await self.job(spec.job_id)
        else:
            if self._admit is not None:
                self._admit(spec)
            await asyncio.to_thread(check_cluster, self.settings, self.slurm)
            self._stage(spec, folder)
        args = sbatch_args(self.settings, spec.job_id, folder)
        try:
            slurm_id = await asyncio.to_thread(self.slurm.submit, folder.path / SCRIPT_FILE, args)
        except SlurmUnavailable as e:
            shutil.rmtree(folder.path, ignore_errors=True)
            raise scheduled.unavailable(
                self.name, f"sbatch did not take job {spec.job_id} ({e}); nothing was submitted"
            ) from None
        except SlurmRefused as e:
            shutil.rmtree(folder.path, ignore_errors=True)
            raise ConfigError(
                f"slurm: sbatch refused job {spec.job_id}: {e}; check the executor's "
                "settings (`annealplan executors list`: partition, gpus_per_node, account, "
                "time, sbatch_args); nothing was submitted"
            ) from None
        (folder.path / SLURM_ID_FILE).write_text(slurm_id)
        return await self.job(spec.job_id)

    def _stage(self, spec: AnnealJobSpec, folder: BatchFolder) -> None:
        """Write the job's folder whole: it appears (renamed into place) complete."""
        jobs = self.state / "jobs"
        jobs.mkdir(parents=True, exist_ok=True)
        staging = BatchFolder(jobs / f".{spec.job_id}.staging")
        shutil.rmtree(staging.path, ignore_errors=True)
        if folder.path.is_dir() and not folder.spec_file.is_file():
            shutil.rmtree(folder.path)  # left by a batch job whose submission was undone
        staging.path.mkdir()
        staging.write_spec(spec)
        staging.write_status(new_record(spec))
        args = sbatch_args(self.settings, spec.job_id, folder)
        script = staging.path / SCRIPT_FILE
        script.write_text(job_script(self.settings, spec.job_id, self.state, args))
        script.chmod(0o755)
        staging.path.rename(folder.path)

    async def job(self, job_id: str) -> JobRecord:
        folder = self._known(job_id)
        infos = await self._infos([folder])
        return self._record(folder, infos.get(self.slurm_id(folder) or ""))

    async def jobs(self, state: JobState | None = None) -> list[JobRecord]:
        root = self.state / "jobs"
        folders = (
            [BatchFolder(p) for p in sorted(root.iterdir()) if not p.name.startswith(".")]
            if root.is_dir()
            else []
        )
        folders = [f for f in folders if f.spec_file.is_file()]
        infos = await self._infos(folders)
        records = [self._record(f, infos.get(self.slurm_id(f) or "")) for f in folders]
        records.sort(key=lambda r: (r.created_at, r.job_id))
        return [r for r in records if state is None or r.state is state]

    async def result(self, job_id: str) -> JobResult:
        record = await self.job(job_id)
        return scheduled.result_or_refusal(self.name, record, self.folder(job_id).read_result())

    async def log(self, job_id: str, offset: int = 0, limit: int = 65536) -> LogChunk:
        record = await self.job(job_id)
        return scheduled.file_chunk(
            self.folder(job_id).log, offset, limit, final_state=record.state.final
        )

    async def cancel(self, job_id: str) -> JobRecord:
        """Cancel (idempotent): ``scancel``; a job still queued is cancelled at once, a
        running one when its batch job has stopped its trainers."""
        record = await self.job(job_id)
        if record.state.final:
            return record
        folder = self.folder(job_id)
        folder.request_cancel()
        slurm_id = self.slurm_id(folder)
        if slurm_id is not None:
            await self._call(self.slurm.cancel, slurm_id)
        if record.state is JobState.QUEUED:
            now = datetime.now(UTC)
            folder.write_status(
                record.model_copy(
                    update={
                        "state": JobState.CANCELLED,
                        "cancel_requested": True,
                        "error": JobError(code="cancelled", message="cancelled while queued"),
                        "updated_at": now,
                        "finished_at": now,
                    }
                )
            )
        return await self.job(job_id)

    async def aclose(self) -> None:
        return None
