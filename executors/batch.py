"""One anneal as a batch job: ``python -m executors.batch`` runs the worker's stages for one
job under a cluster scheduler (a Slurm batch job, a Ray job) instead of the daemon.

The job keeps the daemon's folder (``<state>/jobs/<job_id>``: the packed data, the
checkpoints, the final model, ``log.txt``) and adds what the planner's ``slurm`` and
``ray`` backends read back, through :class:`BatchFolder`:

- ``spec.json``: the job, written by the planner before it submits (or taken from the
  ``ANNEALPLAN_JOB_SPEC`` variable by a scheduler without a shared filesystem);
- ``status.json``: the job's :class:`~executors.protocol.JobRecord`, the record the daemon
  reports (state, progress, attempts, error);
- ``result.json``: a succeeded job's :class:`~executors.protocol.JobResult`;
- ``cancel``: present once a cancel was requested.

Every state change is also printed to the job's output as one line,
``@@annealplan-status {record}``, and the result as ``@@annealplan-result {result}``, so
a scheduler whose logs reach the planner but whose filesystem does not (Ray) reports the
same record.

One attempt runs at a time (a ``flock`` on the job's lock file, as the daemon's worker
takes); a job already final is not run again, so a requeued batch job ends at once; a
crash (the trainer died) is retried from the last complete checkpoint up to
``--max-attempts`` times, as the daemon retries a crashed worker. The scheduler stops a
job with SIGTERM to all its processes: the job is then recorded as cancelled when a
cancel was requested (or ``--term-is-cancel`` says the scheduler stops jobs only on
request), otherwise as failed.

Exit codes: 0 succeeded, 3 failed or cancelled, 75 another attempt holds the lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from pydantic import ValidationError

from executors.protocol import (
    AnnealJobSpec,
    JobError,
    JobRecord,
    JobResult,
    JobState,
    Progress,
)
from executors.stages.context import Fenced, JobFailed, WorkerConfig, job_dir

#: the environment variable that may carry the job's spec (JSON)
SPEC_ENV = "ANNEALPLAN_JOB_SPEC"
#: the line that announces a state change in the job's output
STATUS_PREFIX = "@@annealplan-status "
#: the line that carries a succeeded job's result in its output
RESULT_PREFIX = "@@annealplan-result "
EXIT_FAILED = 3
EXIT_LOCKED = 75
#: the least time between two progress writes of ``status.json`` (the last step always goes)
PROGRESS_EVERY_S = 2.0
_PROGRESS = set(Progress.model_fields)


def _now() -> datetime:
    return datetime.now(UTC)


def _write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a sibling and a rename: a reader on another node
    sees the old file or the new one, never half of one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


@dataclass(frozen=True, slots=True)
class BatchFolder:
    """A batch job's folder: its spec, status, result and cancel request.

    The planner's backends and the batch job both go through here, so the two sides
    agree on the files.
    """

    path: Path

    @property
    def spec_file(self) -> Path:
        return self.path / "spec.json"

    @property
    def status_file(self) -> Path:
        return self.path / "status.json"

    @property
    def result_file(self) -> Path:
        return self.path / "result.json"

    @property
    def cancel_file(self) -> Path:
        return self.path / "cancel"

    @property
    def log(self) -> Path:
        """The job's output (the stages' and the trainer's), appended by each attempt."""
        return self.path / "log.txt"

    @property
    def lock(self) -> Path:
        return self.path / ".lock"

    def read_spec(self) -> AnnealJobSpec | None:
        """The job's spec (None: no such file)."""
        try:
            return AnnealJobSpec.model_validate_json(self.spec_file.read_bytes())
        except FileNotFoundError:
            return None

    def write_spec(self, spec: AnnealJobSpec) -> None:
        _write_atomic(self.spec_file, spec.model_dump_json())

    def read_status(self) -> JobRecord | None:
        """The last record written (None: none yet, or a file that does not parse)."""
        try:
            return JobRecord.model_validate_json(self.status_file.read_bytes())
        except (FileNotFoundError, ValidationError):
            return None

    def write_status(self, record: JobRecord, *, over_final: bool = False) -> bool:
        """Write the job's record; a final record is kept unless ``over_final``.

        Returns:
            False when the job was already final (nothing written).
        """
        current = self.read_status()
        if current is not None and current.state.final and not over_final:
            return False
        _write_atomic(self.status_file, record.model_dump_json())
        return True

    def read_result(self) -> JobResult | None:
        try:
            return JobResult.model_validate_json(self.result_file.read_bytes())
        except (FileNotFoundError, ValidationError):
            return None

    def write_result(self, result: JobResult) -> None:
        _write_atomic(self.result_file, result.model_dump_json())

    @property
    def cancel_requested(self) -> bool:
        return self.cancel_file.is_file()

    def request_cancel(self) -> None:
        self.cancel_file.touch()


def new_record(spec: AnnealJobSpec) -> JobRecord:
    """A queued job's first record."""
    now = _now()
    return JobRecord(
        job_id=spec.job_id,
        state=JobState.QUEUED,
        labels=dict(spec.labels),
        created_at=now,
        updated_at=now,
    )


def parse_lines(text: str) -> tuple[JobRecord | None, JobResult | None, Progress | None]:
    """The last status record, the result and the last training progress in a job's
    output (each None when absent), as a scheduler's log gives them."""
    from executors.anneal import PROGRESS_PREFIX

    record: JobRecord | None = None
    result: JobResult | None = None
    progress: Progress | None = None
    for line in text.splitlines():
        if line.startswith(STATUS_PREFIX):
            with contextlib.suppress(ValidationError):
                record = JobRecord.model_validate_json(line[len(STATUS_PREFIX) :])
        elif line.startswith(RESULT_PREFIX):
            with contextlib.suppress(ValidationError):
                result = JobResult.model_validate_json(line[len(RESULT_PREFIX) :])
        elif line.startswith(PROGRESS_PREFIX):
            with contextlib.suppress(ValueError, TypeError, AttributeError):
                payload = json.loads(line[len(PROGRESS_PREFIX) :])
                progress = Progress(**{k: v for k, v in payload.items() if k in _PROGRESS})
    return record, result, progress


def hostfile_text(hosts: list[str], slots: int) -> str:
    """DeepSpeed's hostfile for an allocation: one ``host slots=N`` line per node."""
    return "".join(f"{host} slots={max(1, slots)}\n" for host in hosts)


def allocation_hosts(nodelist: str) -> list[str]:
    """The hosts of a Slurm node list (``gpu[01-04]``), expanded by ``scontrol``.

    Raises:
        JobFailed: scontrol is missing or cannot read the list.
    """
    try:
        out = subprocess.run(
            ["scontrol", "show", "hostnames", nodelist],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
    except (OSError, subprocess.SubprocessError) as e:
        raise JobFailed(
            "no_hostfile", f"cannot expand the allocation's node list {nodelist!r}: {e}"
        ) from None
    return [h for h in out.stdout.split() if h]


class Terminated(BaseException):
    """The scheduler sent SIGTERM (a BaseException: no stage may swallow it)."""


def _on_term(signum: int, frame: Any) -> None:
    raise Terminated()


@dataclass(frozen=True, slots=True)
class BatchOptions:
    """What one batch job is told on its command line."""

    state_dir: Path
    root: Path
    job_id: str
    gpus: int = 1
    nodes: int = 1
    max_attempts: int = 3
    term_is_cancel: bool = False
    plugins: tuple[str, ...] = ()


class _Job:
    """One batch job's run: its record, written to the folder and printed to the log."""

    def __init__(self, folder: BatchFolder, spec: AnnealJobSpec) -> None:
        self.folder = folder
        self.spec = spec
        self.record = folder.read_status() or new_record(spec)
        self._last_progress_write = 0.0

    def publish(self, **changes: Any) -> bool:
        """Change the record, write it and print it; False when it was already final."""
        self.record = self.record.model_copy(update={"updated_at": _now(), **changes})
        written = self.folder.write_status(self.record)
        if written:
            line = STATUS_PREFIX + self.record.model_dump_json(exclude={"progress"})
            sys.stdout.write(line + "\n")
            sys.stdout.flush()
        return written

    def finish(self, state: JobState, code: str = "", message: str = "") -> None:
        error = JobError(code=code, message=message) if code else None
        self.publish(state=state, error=error, finished_at=_now())

    def enter(self, stage: JobState) -> bool:
        """May the job move on to ``stage``: no, once a cancel was requested."""
        if self.folder.cancel_requested:
            return False
        return self.publish(state=stage)

    def progress(self, progress: Progress) -> None:
        now = time.monotonic()
        last = progress.step == progress.total_steps
        if now - self._last_progress_write >= PROGRESS_EVERY_S or last:
            self._last_progress_write = now
            self.record = self.record.model_copy(update={"progress": progress})
            self.folder.write_status(self.record)


def _spec(folder: BatchFolder) -> AnnealJobSpec:
    """The job's spec: from ``ANNEALPLAN_JOB_SPEC`` (then kept in the folder) or the folder."""
    given = os.environ.get(SPEC_ENV)
    if given:
        spec = AnnealJobSpec.model_validate_json(given)
        kept = folder.read_spec()
        if kept is not None and kept.spec_hash() != spec.spec_hash():
            raise JobFailed(
                "conflict",
                f"job {spec.job_id!r} already ran here with a different spec; choose a new job id",
            )
        folder.write_spec(spec)
        return spec
    spec = folder.read_spec()
    if spec is None:
        raise JobFailed("no_spec", f"{folder.spec_file} is missing; submit the job again")
    return spec


def _thread_budget() -> None:
    """Size the job's threads from what the scheduler gave it, unless already set."""
    if os.environ.get("OMP_NUM_THREADS"):
        return
    given = os.environ.get("SLURM_CPUS_PER_TASK") or os.environ.get("SLURM_CPUS_ON_NODE")
    threads = given or str(len(os.sched_getaffinity(0)))
    os.environ["OMP_NUM_THREADS"] = threads
    os.environ["MKL_NUM_THREADS"] = threads


def _hostfile(folder: BatchFolder, opts: BatchOptions) -> Path | None:
    """DeepSpeed's hostfile from the allocation's node list (None on one node).

    Raises:
        JobFailed: several nodes were asked for but the job is not in a Slurm allocation.
    """
    if opts.nodes <= 1:
        return None
    nodelist = os.environ.get("SLURM_JOB_NODELIST")
    if not nodelist:
        raise JobFailed(
            "no_allocation",
            f"--nodes {opts.nodes} needs a Slurm allocation (SLURM_JOB_NODELIST is not set)",
        )
    hosts = allocation_hosts(nodelist)
    if len(hosts) != opts.nodes:
        raise JobFailed(
            "allocation_mismatch",
            f"the allocation has {len(hosts)} node(s) ({nodelist}); the job asked for {opts.nodes}",
        )
    path = folder.path / "hostfile"
    _write_atomic(path, hostfile_text(hosts, opts.gpus))
    print(f"hostfile for {len(hosts)} nodes: {', '.join(hosts)}", flush=True)
    return path


def _stop_children() -> None:
    """Stop what this job started (the launcher and its trainers), gracefully first."""
    import psutil

    children = psutil.Process().children(recursive=True)
    for child in children:
        with contextlib.suppress(psutil.Error):
            child.terminate()
    _, alive = psutil.wait_procs(children, timeout=5)
    for child in alive:
        with contextlib.suppress(psutil.Error):
            child.kill()


def run(opts: BatchOptions) -> int:
    """Run (or resume) one job to a final state; see the module docstring for exit codes."""
    from executors.paths import PathRefused
    from executors.stages.pipeline import run_stages

    folder = BatchFolder(job_dir(opts.state_dir, opts.job_id))
    if not folder.path.is_dir() and not os.environ.get(SPEC_ENV):
        print(f"job {opts.job_id} cannot start: {folder.path} does not exist", flush=True)
        return EXIT_FAILED
    folder.path.mkdir(parents=True, exist_ok=True)
    lock_fd = os.open(folder.lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print("another attempt of this job holds its lock; exiting", flush=True)
        return EXIT_LOCKED
    try:
        spec = _spec(folder)
    except (JobFailed, ValidationError) as e:
        print(f"job {opts.job_id} cannot start: {e}", flush=True)
        return EXIT_FAILED
    job = _Job(folder, spec)
    if job.record.state.final:
        print(f"job {spec.job_id} is already {job.record.state.value}", flush=True)
        return 0 if job.record.state is JobState.SUCCEEDED else EXIT_FAILED
    if folder.cancel_requested:
        job.finish(JobState.CANCELLED, "cancelled", "cancelled while queued")
        return EXIT_FAILED
    _thread_budget()
    scheduler_id = os.environ.get("SLURM_JOB_ID") or os.environ.get("RAY_JOB_ID") or "batch"
    previous = signal.signal(signal.SIGTERM, _on_term)
    try:
        hostfile = _hostfile(folder, opts)
        while True:
            attempt = job.record.attempts + 1
            job.publish(
                state=JobState.MATERIALIZING,
                attempts=attempt,
                started_at=job.record.started_at or _now(),
                error=None,
            )
            print(f"--- attempt {attempt} of job {spec.job_id} ({scheduler_id}) ---", flush=True)
            cfg = WorkerConfig(
                state_dir=opts.state_dir,
                root=opts.root,
                job_id=spec.job_id,
                token=f"{scheduler_id}-{attempt}",
                gpus=max(1, opts.gpus),
                hostfile=hostfile,
                plugins=opts.plugins,
                fenced=False,
            )
            try:
                result = run_stages(spec, cfg, enter=job.enter, on_progress=job.progress)
            except (JobFailed, Fenced, PathRefused):
                raise
            except Exception:
                traceback.print_exc()
                sys.stdout.flush()
                if attempt < opts.max_attempts:
                    print("retrying from the last complete checkpoint", flush=True)
                    continue
                raise JobFailed(
                    "crashed",
                    f"the job crashed {attempt} times; see its log for the tracebacks",
                ) from None
            folder.write_result(result)
            sys.stdout.write(RESULT_PREFIX + result.model_dump_json() + "\n")
            job.finish(JobState.SUCCEEDED)
            print(f"job {spec.job_id} succeeded", flush=True)
            return 0
    except Fenced:
        job.finish(JobState.CANCELLED, "cancelled", "cancelled on request")
    except PathRefused as e:
        job.finish(JobState.FAILED, "path_refused", f"{e.field}: {e.message}")
    except JobFailed as e:
        print(f"job failed: {e.code}: {e.message}", flush=True)
        job.finish(JobState.FAILED, e.code, e.message)
    except Terminated:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        _stop_children()
        if folder.cancel_requested or opts.term_is_cancel:
            job.finish(JobState.CANCELLED, "cancelled", "cancelled on request")
        else:
            job.finish(
                JobState.FAILED,
                "terminated",
                "the scheduler stopped the job (its time limit, a preemption, or a cancel "
                "from outside annealplan); see its log",
            )
    finally:
        signal.signal(signal.SIGTERM, previous)
    return EXIT_FAILED


@click.command(
    name="executors.batch",
    context_settings={"help_option_names": ["-h", "--help"]},
    help="Run one anneal job as a batch job (under Slurm, Ray or another scheduler).",
)
@click.option("--state", "state_dir", required=True, type=click.Path(path_type=Path))
@click.option("--root", required=True, type=click.Path(path_type=Path))
@click.option("--job-id", required=True)
@click.option("--gpus", type=int, default=1, show_default=True, help="Processes per node.")
@click.option("--nodes", type=int, default=1, show_default=True)
@click.option("--max-attempts", type=int, default=3, show_default=True)
@click.option("--term-is-cancel", is_flag=True, help="SIGTERM means a requested cancel.")
@click.option("--plugin", "plugins", multiple=True)
def cli(
    state_dir: Path,
    root: Path,
    job_id: str,
    gpus: int,
    nodes: int,
    max_attempts: int,
    term_is_cancel: bool,
    plugins: tuple[str, ...],
) -> None:
    opts = BatchOptions(
        state_dir=state_dir.resolve(),
        root=root.resolve(),
        job_id=job_id,
        gpus=gpus,
        nodes=nodes,
        max_attempts=max(1, max_attempts),
        term_is_cancel=term_is_cancel,
        plugins=plugins,
    )
    raise SystemExit(run(opts))


def main(argv: list[str] | None = None) -> None:
    """``python -m executors.batch``: exits with :func:`run`'s code."""
    cli.main(args=argv, prog_name="python -m executors.batch")


if __name__ == "__main__":
    main()
