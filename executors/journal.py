"""The executor's durable job queue: SQLite in WAL mode, shared by the daemon and its workers.

The daemon and every worker process open the same file. Writes that belong to an attempt
(progress, state changes, the result) are *fenced* by the attempt token the daemon handed
the worker: once a job is requeued under a new token, a stale worker's writes change
nothing. Every transition is one transaction, so a ``kill -9`` at any instant leaves the
journal either before or after it.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from executors.protocol import (
    FINAL_STATES,
    AnnealJobSpec,
    JobError,
    JobRecord,
    JobResult,
    JobState,
    Progress,
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT PRIMARY KEY,
    spec_json TEXT NOT NULL,
    spec_hash TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    crashes INTEGER NOT NULL DEFAULT 0,
    attempt_token TEXT,
    pid INTEGER,
    pid_started REAL,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    error_code TEXT,
    error_message TEXT,
    progress_json TEXT NOT NULL DEFAULT '{}',
    result_json TEXT,
    heartbeat_at REAL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id TEXT NOT NULL,
    at REAL NOT NULL,
    kind TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_job ON events(job_id);
"""

_FINAL = tuple(s.value for s in FINAL_STATES)


class SpecConflict(Exception):
    """The job id exists with a different spec."""


class QueueFull(Exception):
    """Too many jobs are waiting or running."""


@dataclass(frozen=True, slots=True)
class Row:
    """A journal row, as the daemon's supervisor needs it."""

    job_id: str
    state: JobState
    attempt_token: str | None
    pid: int | None
    pid_started: float | None
    cancel_requested: bool
    heartbeat_at: float | None
    attempts: int
    crashes: int


def _iso(ts: float | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC)


class Journal:
    """A connection to the journal file; thread-safe (one lock around one connection)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: we issue BEGIN IMMEDIATE ourselves, so a read-modify-write
        # never races another process between its read and its write.
        self._con = sqlite3.connect(
            self.path, timeout=30.0, isolation_level=None, check_same_thread=False
        )
        self._lock = threading.RLock()
        self._con.execute("PRAGMA journal_mode=WAL")
        self._con.execute("PRAGMA synchronous=FULL")
        self._con.execute("PRAGMA busy_timeout=30000")
        with self._tx() as con:
            for stmt in _SCHEMA.strip().split(";"):
                if stmt.strip():
                    con.execute(stmt)

    def close(self) -> None:
        with self._lock:
            self._con.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._con.execute("BEGIN IMMEDIATE")
            try:
                yield self._con
            except BaseException:
                self._con.execute("ROLLBACK")
                raise
            else:
                self._con.execute("COMMIT")

    def _event(self, con: sqlite3.Connection, job_id: str, kind: str, detail: str) -> None:
        con.execute(
            "INSERT INTO events(job_id, at, kind, detail) VALUES (?, ?, ?, ?)",
            (job_id, time.time(), kind, detail),
        )

    # -- submission -------------------------------------------------------------------

    def submit(self, spec: AnnealJobSpec, *, max_queue: int) -> tuple[JobRecord, bool]:
        """Add a job, idempotently.

        Returns:
            The record and True when it was created (False: it already existed, same spec).

        Raises:
            SpecConflict: the id exists with a different spec.
            QueueFull: the job is new and ``max_queue`` jobs are already not final.
        """
        digest = spec.spec_hash()
        now = time.time()
        with self._tx() as con:
            row = con.execute(
                "SELECT spec_hash FROM jobs WHERE job_id = ?", (spec.job_id,)
            ).fetchone()
            if row is not None:
                if row[0] != digest:
                    raise SpecConflict(spec.job_id)
                created = False
            else:
                (waiting,) = con.execute(
                    f"SELECT count(*) FROM jobs WHERE state NOT IN ({','.join('?' * len(_FINAL))})",
                    _FINAL,
                ).fetchone()
                if waiting >= max_queue:
                    raise QueueFull(spec.job_id)
                con.execute(
                    "INSERT INTO jobs(job_id, spec_json, spec_hash, state, created_at, updated_at)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (spec.job_id, spec.model_dump_json(), digest, JobState.QUEUED.value, now, now),
                )
                self._event(con, spec.job_id, "submitted", digest)
                created = True
        return self.record(spec.job_id), created

    # -- reads ------------------------------------------------------------------------

    _COLS = (
        "job_id, state, progress_json, attempts, cancel_requested, error_code, error_message,"
        " spec_json, created_at, updated_at, started_at, finished_at"
    )

    def _to_record(self, r: tuple[Any, ...]) -> JobRecord:
        spec = json.loads(r[7])
        return JobRecord(
            job_id=r[0],
            state=JobState(r[1]),
            progress=Progress.model_validate(json.loads(r[2] or "{}")),
            attempts=r[3],
            cancel_requested=bool(r[4]),
            error=JobError(code=r[5], message=r[6] or "") if r[5] else None,
            labels=spec.get("labels", {}),
            created_at=_iso(r[8]),
            updated_at=_iso(r[9]),
            started_at=_iso(r[10]),
            finished_at=_iso(r[11]),
        )

    def record(self, job_id: str) -> JobRecord | None:
        with self._lock:
            r = self._con.execute(
                f"SELECT {self._COLS} FROM jobs WHERE job_id = ?", (job_id,)
            ).fetchone()
        return None if r is None else self._to_record(r)

    def records(self, state: JobState | None = None, limit: int = 1000) -> list[JobRecord]:
        with self._lock:
            if state is None:
                rows = self._con.execute(
                    f"SELECT {self._COLS} FROM jobs ORDER BY created_at, job_id LIMIT ?", (limit,)
                ).fetchall()
            else:
                rows = self._con.execute(
                    f"SELECT {self._COLS} FROM jobs WHERE state = ? ORDER BY created_at, job_id"
                    " LIMIT ?",
                    (state.value, limit),
                ).fetchall()
        return [self._to_record(r) for r in rows]

    def spec(self, job_id: str) -> AnnealJobSpec | None:
        with self._lock:
            r = self._con.execute(
                "SELECT spec_json FROM jobs WHERE job_id = ?", (job_id,)
            ).fetchone()
        return None if r is None else AnnealJobSpec.model_validate_json(r[0])

    def result(self, job_id: str) -> JobResult | None:
        with self._lock:
            r = self._con.execute(
                "SELECT result_json FROM jobs WHERE job_id = ? AND state = ?",
                (job_id, JobState.SUCCEEDED.value),
            ).fetchone()
        return None if r is None or r[0] is None else JobResult.model_validate_json(r[0])

    def row(self, job_id: str) -> Row | None:
        with self._lock:
            r = self._con.execute(
                "SELECT job_id, state, attempt_token, pid, pid_started, cancel_requested,"
                " heartbeat_at, attempts, crashes FROM jobs WHERE job_id = ?",
                (job_id,),
            ).fetchone()
        return None if r is None else self._row(r)

    @staticmethod
    def _row(r: tuple[Any, ...]) -> Row:
        return Row(r[0], JobState(r[1]), r[2], r[3], r[4], bool(r[5]), r[6], r[7], r[8])

    def active_rows(self) -> list[Row]:
        """Rows of jobs that are not final, oldest first."""
        with self._lock:
            rows = self._con.execute(
                "SELECT job_id, state, attempt_token, pid, pid_started, cancel_requested,"
                " heartbeat_at, attempts, crashes FROM jobs"
                f" WHERE state NOT IN ({','.join('?' * len(_FINAL))}) ORDER BY created_at, job_id",
                _FINAL,
            ).fetchall()
        return [self._row(r) for r in rows]

    def events(self, job_id: str) -> list[tuple[float, str, str]]:
        with self._lock:
            return self._con.execute(
                "SELECT at, kind, detail FROM events WHERE job_id = ? ORDER BY id", (job_id,)
            ).fetchall()

    def token_is_current(self, job_id: str, token: str) -> bool:
        with self._lock:
            r = self._con.execute(
                "SELECT attempt_token, state, cancel_requested FROM jobs WHERE job_id = ?",
                (job_id,),
            ).fetchone()
        return r is not None and r[0] == token and r[1] not in _FINAL and not r[2]

    # -- the daemon's transitions -------------------------------------------------------

    def claim(self, job_id: str) -> str | None:
        """Start a new attempt of a queued job: a fresh attempt token, state materializing.

        Returns:
            The attempt token, or None when the job is no longer queued (cancelled…).
        """
        token = secrets.token_hex(16)
        now = time.time()
        with self._tx() as con:
            cur = con.execute(
                "UPDATE jobs SET state = ?, attempt_token = ?, attempts = attempts + 1,"
                " heartbeat_at = ?, updated_at = ?, started_at = coalesce(started_at, ?),"
                " pid = NULL, pid_started = NULL"
                " WHERE job_id = ? AND state = ? AND cancel_requested = 0",
                (
                    JobState.MATERIALIZING.value,
                    token,
                    now,
                    now,
                    now,
                    job_id,
                    JobState.QUEUED.value,
                ),
            )
            if cur.rowcount != 1:
                return None
            self._event(con, job_id, "claimed", token[:8])
        return token

    def set_pid(self, job_id: str, token: str, pid: int, pid_started: float) -> None:
        with self._tx() as con:
            con.execute(
                "UPDATE jobs SET pid = ?, pid_started = ? WHERE job_id = ? AND attempt_token = ?",
                (pid, pid_started, job_id, token),
            )

    def requeue(self, job_id: str, *, cause: str, crashed: bool) -> bool:
        """Put a non-final job back in the queue under no token (its worker is gone)."""
        now = time.time()
        with self._tx() as con:
            cur = con.execute(
                "UPDATE jobs SET state = ?, attempt_token = NULL, pid = NULL, pid_started = NULL,"
                " crashes = crashes + ?, updated_at = ?"
                f" WHERE job_id = ? AND state NOT IN ({','.join('?' * len(_FINAL))})",
                (JobState.QUEUED.value, int(crashed), now, job_id, *_FINAL),
            )
            if cur.rowcount == 1:
                self._event(con, job_id, "retry" if crashed else "requeued", cause)
            return cur.rowcount == 1

    def finish(
        self,
        job_id: str,
        state: JobState,
        *,
        token: str | None = None,
        error: JobError | None = None,
        result: JobResult | None = None,
    ) -> bool:
        """Move a job to a final state, once. With ``token`` only the current attempt may.

        Returns:
            True when this call made the transition.
        """
        assert state in FINAL_STATES
        now = time.time()
        # A worker's own finish loses to a cancel request: the daemon then records cancelled.
        fence = " AND attempt_token = ? AND cancel_requested = 0" if token is not None else ""
        params: list[Any] = [
            state.value,
            error.code if error else None,
            error.message if error else None,
            result.model_dump_json() if result else None,
            now,
            now,
            job_id,
            *_FINAL,
        ]
        if token is not None:
            params.append(token)
        with self._tx() as con:
            cur = con.execute(
                "UPDATE jobs SET state = ?, error_code = ?, error_message = ?, result_json = ?,"
                " updated_at = ?, finished_at = ?, attempt_token = NULL"
                f" WHERE job_id = ? AND state NOT IN ({','.join('?' * len(_FINAL))}){fence}",
                params,
            )
            if cur.rowcount == 1:
                self._event(con, job_id, state.value, error.message if error else "")
            return cur.rowcount == 1

    def fail(self, job_id: str, code: str, message: str, *, token: str | None = None) -> bool:
        """:meth:`finish` in ``FAILED`` with the error ``code: message``."""
        error = JobError(code=code, message=message)
        return self.finish(job_id, JobState.FAILED, token=token, error=error)

    def cancelled(self, job_id: str, message: str) -> bool:
        """:meth:`finish` in ``CANCELLED`` (error code ``cancelled``), by the daemon."""
        error = JobError(code="cancelled", message=message)
        return self.finish(job_id, JobState.CANCELLED, error=error)

    def request_cancel(self, job_id: str) -> JobRecord | None:
        """Mark a job for cancellation; a queued job is cancelled at once. Idempotent."""
        now = time.time()
        with self._tx() as con:
            r = con.execute("SELECT state FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
            if r is None:
                return None
            if r[0] not in _FINAL:
                con.execute(
                    "UPDATE jobs SET cancel_requested = 1, updated_at = ? WHERE job_id = ?",
                    (now, job_id),
                )
                if r[0] == JobState.QUEUED.value:
                    # Same error as every other cancel, so clients can tell why it ended.
                    con.execute(
                        "UPDATE jobs SET state = ?, finished_at = ?, attempt_token = NULL,"
                        " error_code = 'cancelled', error_message = 'cancelled while queued'"
                        " WHERE job_id = ?",
                        (JobState.CANCELLED.value, now, job_id),
                    )
                    self._event(con, job_id, "cancelled", "while queued")
                else:
                    self._event(con, job_id, "cancel_requested", r[0])
        return self.record(job_id)

    # -- the worker's fenced writes ------------------------------------------------------

    def advance(self, job_id: str, token: str, state: JobState) -> bool:
        """A worker moves its job to a running stage (fenced by its token)."""
        now = time.time()
        with self._tx() as con:
            cur = con.execute(
                "UPDATE jobs SET state = ?, updated_at = ?, heartbeat_at = ?"
                " WHERE job_id = ? AND attempt_token = ? AND cancel_requested = 0",
                (state.value, now, now, job_id, token),
            )
            return cur.rowcount == 1

    def heartbeat(self, job_id: str, token: str, progress: Progress | None = None) -> bool:
        """Record liveness (and progress, when given); False when the token is stale."""
        now = time.time()
        with self._tx() as con:
            if progress is None:
                cur = con.execute(
                    "UPDATE jobs SET heartbeat_at = ? WHERE job_id = ? AND attempt_token = ?",
                    (now, job_id, token),
                )
            else:
                cur = con.execute(
                    "UPDATE jobs SET heartbeat_at = ?, updated_at = ?, progress_json = ?"
                    " WHERE job_id = ? AND attempt_token = ?",
                    (now, now, progress.model_dump_json(), job_id, token),
                )
            return cur.rowcount == 1
