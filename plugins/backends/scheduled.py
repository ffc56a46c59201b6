"""What the backends that hand each anneal to a cluster scheduler (``slurm``, ``ray``) share:
the daemon's replies, so a job on a scheduler reads the same as one on a daemon.

The job itself runs ``python -m executors.batch`` (the worker's stages for one job), which
records its state in the job's folder and in its output
(:class:`executors.batch.BatchFolder`); these helpers turn that into the executor
protocol's records, log chunks and refusals, with the daemon's statuses and codes.
"""

from __future__ import annotations

from pathlib import Path

from executors.protocol import JobRecord, JobResult, JobState, LogChunk
from plugins.errors import ExecutorReplyError

#: the most bytes one log read returns (the daemon's limit)
MAX_LOG_CHUNK = 1 << 20


def no_such_job(executor: str, job_id: str) -> ExecutorReplyError:
    """The daemon's 404: the executor does not know the job."""
    return ExecutorReplyError(
        f"executor {executor}: no job {job_id!r} on this executor (job_id)",
        status=404,
        code="no_such_job",
        field="job_id",
    )


def conflict(executor: str, job_id: str) -> ExecutorReplyError:
    """The daemon's 409: the id exists with another spec."""
    return ExecutorReplyError(
        f"executor {executor}: job {job_id!r} exists with a different spec; choose a new job "
        "id (job_id)",
        status=409,
        code="conflict",
        field="job_id",
    )


def unavailable(executor: str, message: str) -> ExecutorReplyError:
    """The scheduler does not answer now (dispatch keeps the job where it is and retries)."""
    return ExecutorReplyError(f"executor {executor}: {message}", status=503, code="unavailable")


def no_result(executor: str, record: JobRecord) -> ExecutorReplyError:
    """The daemon's 409 for a result asked of a job that has none (yet)."""
    job_id = record.job_id
    if record.state.final:
        why = f": {record.error.code}: {record.error.message}" if record.error else ""
        return ExecutorReplyError(
            f"executor {executor}: job {job_id} {record.state.value}{why}",
            status=409,
            code=f"job_{record.state.value}",
            field="job_id",
        )
    return ExecutorReplyError(
        f"executor {executor}: job {job_id} is {record.state.value}; poll until it is final",
        status=409,
        code="not_finished",
    )


def result_or_refusal(executor: str, record: JobRecord, result: JobResult | None) -> JobResult:
    """A succeeded job's result, or the daemon's refusal.

    Raises:
        ExecutorReplyError: 409 when the job did not succeed (or its result is missing).
    """
    if record.state is JobState.SUCCEEDED and result is not None:
        return result
    raise no_result(executor, record)


def chunk(data: bytes, offset: int, limit: int, *, final_state: bool) -> LogChunk:
    """A slice of a whole log (``data``) from byte ``offset``, as the daemon returns it."""
    size = len(data)
    start = min(max(offset, 0), size)
    piece = data[start : start + max(1, min(limit, MAX_LOG_CHUNK))]
    end = start + len(piece)
    return LogChunk(
        offset=start,
        next_offset=end,
        text=piece.decode("utf-8", errors="replace"),
        final=final_state and end >= size,
    )


def file_chunk(path: Path, offset: int, limit: int, *, final_state: bool) -> LogChunk:
    """A slice of a log file from byte ``offset`` (an empty chunk while there is none)."""
    limit = max(1, min(limit, MAX_LOG_CHUNK))
    try:
        with path.open("rb") as fh:
            size = fh.seek(0, 2)
            start = min(max(offset, 0), size)
            fh.seek(start)
            data = fh.read(limit)
    except FileNotFoundError:
        return LogChunk(offset=0, next_offset=0, text="", final=final_state)
    end = start + len(data)
    return LogChunk(
        offset=start,
        next_offset=end,
        text=data.decode("utf-8", errors="replace"),
        final=final_state and end >= size,
    )


def state_dir(root: str | Path, state: str | None, executor: str) -> Path:
    """Where an executor's job folders live: ``state``, or ``<root>/.annealplan/<name>``."""
    if state:
        return Path(state).expanduser()
    return Path(root).expanduser() / ".annealplan" / executor
