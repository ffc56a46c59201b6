"""The executor daemon: an HTTP API over the journal, and a supervisor that runs the jobs.

    annealplan-executor serve --host 127.0.0.1 --port 8765 --token-file F --root DIR \\
        [--state DIR] [--gpus N] [--hostfile F] [--max-jobs N] [--worker-stall-timeout S]
        [--allow-remote]

Routes (all under ``/v1``, all behind the bearer token, the OpenAPI docs included):

- ``GET /v1/health``: ``{"ok": true, "protocol": "1"}`` and nothing else;
- ``POST /v1/jobs``: submit an :class:`~executors.protocol.AnnealJobSpec`; idempotent by
  ``job_id`` (201 when created, 200 when it was there with the same spec, 409 when the id
  exists with a different spec); 413 over the body limit, 429 + ``Retry-After`` when the
  queue is full;
- ``GET /v1/jobs``, ``GET /v1/jobs/{id}``: job records;
- ``GET /v1/jobs/{id}/log?offset=N``: the job's log from byte ``N`` (a :class:`LogChunk`);
- ``DELETE /v1/jobs/{id}``: cancel (idempotent): the job's whole process group is killed;
- ``GET /v1/jobs/{id}/result``: the :class:`JobResult` of a succeeded job.

Every 4xx and 5xx answer has the body ``{code, field, message}``.

Security: the token is read from a file only its owner may read (the daemon refuses to start
otherwise) and compared in constant time; the daemon binds to loopback unless
``--allow-remote`` is given, and refuses requests whose ``Host`` is not one it serves or
that carry a browser ``Origin`` header (DNS rebinding and cross-site requests).

The supervisor is one thread: it takes queued jobs from the journal and starts each one as
``python -m executors.worker`` in a new session (its own process group), at most
``--max-jobs`` at a time. At start-up every job that is not final is put back in the queue
(its stale worker, if one survived a ``kill -9`` of the daemon, is killed first), and its
next worker resumes from the last complete checkpoint.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hmac
import ipaddress
import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from executors.anneal import EXIT_FENCED
from executors.journal import Journal, QueueFull, SpecConflict
from executors.paths import PathRefused, check_spec_paths
from executors.protocol import (
    PROTOCOL_VERSION,
    AnnealJobSpec,
    ErrorBody,
    Health,
    JobError,
    JobRecord,
    JobResult,
    JobState,
    LogChunk,
)
from executors.worker import (
    EXIT_FAILED,
    EXIT_LOCKED,
    JOURNAL_NAME,
    clean_up_launch,
    job_dir,
)

LOG_NAME = "log.txt"
LOCK_NAME = "daemon.lock"
MAX_LOG_CHUNK = 256 * 1024
TOKEN_ENV = "ANNEALPLAN_ATTEMPT_TOKEN"
_LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1", "[::1]"}


class TokenFileError(Exception):
    """The token file is missing, empty, or readable by others."""


class StateDirLocked(Exception):
    """Another live daemon serves the state folder."""


def lock_state_dir(state_dir: Path) -> int:
    """Take the state folder for this process: an exclusive ``flock`` on ``daemon.lock``.

    Two daemons on one journal would each recover and run the same jobs. The lock is held
    by the open descriptor, so it lasts exactly as long as this process (a ``kill -9``
    releases it) and is not inherited by workers (Python opens descriptors close-on-exec).

    Returns:
        The descriptor holding the lock; keep it open for the process lifetime.

    Raises:
        StateDirLocked: another process holds the lock (its pid in the message when known).
    """
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 64).decode(errors="replace").strip()
        os.close(fd)
        who = f" (pid {holder})" if holder.isdigit() else ""
        raise StateDirLocked(
            f"another annealplan-executor{who} already serves the state folder {state_dir}; "
            "stop it first, or give this one its own --state folder"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


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


def _error(status: int, code: str, message: str, field_: str | None = None, **headers: str):
    body = ErrorBody(code=code, field=field_, message=message).model_dump()
    return JSONResponse(body, status_code=status, headers=headers or None)


# -- the supervisor ----------------------------------------------------------------------


@dataclass
class _Running:
    proc: subprocess.Popen[bytes]
    token: str
    cancel_sent_at: float | None = None


class Supervisor:
    """Starts workers for queued jobs and watches them; one thread."""

    def __init__(self, cfg: DaemonConfig, journal: Journal) -> None:
        self.cfg = cfg
        self.journal = journal
        self.running: dict[str, _Running] = {}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # lifecycle
    def start(self) -> None:
        self.recover()
        self._thread = threading.Thread(target=self._loop, name="supervisor", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        """Stop the loop; kill running workers and requeue their jobs (they resume later)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        for job_id, run in list(self.running.items()):
            _kill_group(run.proc.pid, grace_s=self.cfg.cancel_grace_s)
            with contextlib.suppress(Exception):
                run.proc.wait(timeout=5)
            clean_up_launch(job_dir(self.cfg.state_dir, job_id))
            self.journal.requeue(job_id, cause="daemon stopped", crashed=False)
        self.running.clear()

    def recover(self) -> None:
        """Start-up: every non-final job goes back to the queue; stale workers are killed."""
        for row in self.journal.active_rows():
            if row.pid is not None and _same_process(row.pid, row.pid_started):
                _kill_group(row.pid, grace_s=self.cfg.cancel_grace_s)
                clean_up_launch(job_dir(self.cfg.state_dir, row.job_id))
            if row.cancel_requested:
                self.journal.finish(
                    row.job_id,
                    JobState.CANCELLED,
                    error=JobError(code="cancelled", message="cancelled before a restart"),
                )
            elif row.state is not JobState.QUEUED:
                self.journal.requeue(row.job_id, cause="daemon restarted", crashed=False)

    def _loop(self) -> None:
        while not self._stop.is_set():
            if self._orphaned():
                # The program that started us is gone: shut down as on SIGTERM (running
                # jobs are stopped and requeued; they resume when a daemon serves again).
                print(
                    f"the parent process {self.cfg.parent_pid} is gone; shutting down",
                    file=sys.stderr,
                    flush=True,
                )
                os.kill(os.getpid(), signal.SIGTERM)
                return
            try:
                self.tick()
            except Exception as e:  # the supervisor must outlive one bad tick
                print(f"supervisor: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
            self._wake.wait(self.cfg.poll_s)
            self._wake.clear()

    def _orphaned(self) -> bool:
        # A child whose parent died is re-parented (to init or a subreaper).
        return self.cfg.parent_pid is not None and os.getppid() != self.cfg.parent_pid

    def tick(self) -> None:
        """One pass: reap finished workers, act on cancels, start queued jobs."""
        for job_id, run in list(self.running.items()):
            code = run.proc.poll()
            row = self.journal.row(job_id)
            if code is None:
                if row is not None and row.cancel_requested and run.cancel_sent_at is None:
                    run.cancel_sent_at = time.time()
                    _kill_group(run.proc.pid, grace_s=self.cfg.cancel_grace_s)
                elif row is not None and self._stalled(row):
                    # The worker itself stopped beating (SIGSTOP, a hung import…): its own
                    # watchdog cannot report that, so the supervisor does.
                    silent = time.time() - (row.heartbeat_at or 0.0)
                    _kill_group(run.proc.pid, grace_s=self.cfg.cancel_grace_s)
                    self.journal.finish(
                        job_id,
                        JobState.FAILED,
                        error=JobError(
                            code="stalled",
                            message=f"the worker sent no heartbeat for {silent:.0f} s (limit "
                            f"{self.cfg.heartbeat_timeout_s:.0f} s); it was killed",
                        ),
                    )
                continue
            del self.running[job_id]
            self._reaped(job_id, code, row)
        slots = self.cfg.max_jobs - len(self.running)
        if slots <= 0:
            return
        for row in self.journal.active_rows():
            if slots <= 0:
                break
            if row.state is not JobState.QUEUED or row.job_id in self.running:
                continue
            token = self.journal.claim(row.job_id)
            if token is None:
                continue
            self._spawn(row.job_id, token)
            slots -= 1

    def _stalled(self, row: Any) -> bool:
        # The worker beats every 2 s; by default allow the trainer's own (longer) limit plus
        # slack, since a beat can wait on a busy journal (SQLite's 30 s busy timeout).
        limit = self.cfg.worker_stall_s or self.cfg.heartbeat_timeout_s + 30.0
        return row.heartbeat_at is not None and time.time() - row.heartbeat_at > limit

    def _reaped(self, job_id: str, code: int, row: Any) -> None:
        # a worker killed with its trainers (cancel, stall) left their shared-memory
        # buffers behind
        clean_up_launch(job_dir(self.cfg.state_dir, job_id))
        if row is None or row.state.final:
            return
        if row.cancel_requested:
            self.journal.finish(
                job_id,
                JobState.CANCELLED,
                error=JobError(code="cancelled", message="cancelled on request"),
            )
            return
        if code == EXIT_FENCED:
            return  # a newer attempt owns the job
        if code == EXIT_LOCKED:
            self.journal.requeue(job_id, cause="locked by an older attempt", crashed=False)
            return
        if code in (0, EXIT_FAILED):
            # The worker wrote its final state, unless its write was lost: count it a crash.
            code = -1 if code == 0 else code
        if row.crashes >= self.cfg.max_crashes:
            self.journal.finish(
                job_id,
                JobState.FAILED,
                error=JobError(
                    code="crashed",
                    message=f"the worker exited with code {code} {row.crashes + 1} times; "
                    f"see GET /v1/jobs/{job_id}/log",
                ),
            )
        else:
            self.journal.requeue(job_id, cause=f"worker exited with code {code}", crashed=True)

    def _spawn(self, job_id: str, token: str) -> None:
        cfg = self.cfg
        folder = job_dir(cfg.state_dir, job_id)
        folder.mkdir(parents=True, exist_ok=True)
        cmd = [
            sys.executable,
            "-m",
            "executors.worker",
            "--state",
            str(cfg.state_dir),
            "--root",
            str(cfg.root),
            "--job-id",
            job_id,
            "--gpus",
            str(cfg.gpus),
            "--launcher",
            cfg.launcher,
            "--heartbeat-timeout",
            str(cfg.heartbeat_timeout_s),
        ]
        if cfg.hostfile is not None:
            cmd += ["--hostfile", str(cfg.hostfile)]
        if cfg.peak_flops:
            cmd += ["--peak-flops", str(cfg.peak_flops)]
        for p in cfg.plugins:
            cmd += ["--plugin", p]
        env = dict(os.environ)
        env[TOKEN_ENV] = token  # through the environment so it never shows in `ps`
        threads = str(job_threads(cfg))
        env["OMP_NUM_THREADS"] = threads
        env["MKL_NUM_THREADS"] = threads
        package_parent = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_parent, env.get("PYTHONPATH")) if p)
        with (folder / LOG_NAME).open("ab") as log:
            log.write(f"--- attempt {token[:8]} at {time.ctime()} ---\n".encode())
            log.flush()
            proc = subprocess.Popen(
                cmd,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=str(cfg.root),
                start_new_session=True,  # its own process group: cancel kills the whole tree
            )
        self.running[job_id] = _Running(proc, token)
        started = _create_time(proc.pid)
        self.journal.set_pid(job_id, token, proc.pid, started or time.time())


def job_threads(cfg: DaemonConfig) -> int:
    """CPU threads per job: the configured figure, else the cores shared by ``max_jobs``."""
    if cfg.threads_per_job:
        return max(1, cfg.threads_per_job)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cores or 1) // max(1, cfg.max_jobs))


def _create_time(pid: int) -> float | None:
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def _same_process(pid: int, started: float | None) -> bool:
    """True when ``pid`` is still the process recorded (not a recycled pid)."""
    now = _create_time(pid)
    return now is not None and (started is None or abs(now - started) < 1.0)


def _kill_group(pgid: int, *, grace_s: float) -> None:
    """SIGTERM (then SIGCONT) the process group, then SIGKILL what is left after ``grace_s``.

    The group is the worker's session: the launcher and every trainer it started. Members
    that moved to another group are found through the process tree and killed too.
    """
    import psutil

    members: list[psutil.Process] = []
    with contextlib.suppress(psutil.Error):
        leader = psutil.Process(pgid)
        members = [leader, *leader.children(recursive=True)]
    for p in psutil.process_iter():
        with contextlib.suppress(psutil.Error, OSError):
            if os.getpgid(p.pid) == pgid and p not in members:
                members.append(p)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGTERM)
    for p in members:
        with contextlib.suppress(psutil.Error):
            p.terminate()
    # A stopped process (SIGSTOP, a debugger, ^Z) only acts on SIGTERM once continued;
    # without this it would sit out the whole grace period and die by SIGKILL.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGCONT)
    for p in members:
        with contextlib.suppress(psutil.Error):
            p.resume()
    _, alive = psutil.wait_procs(members, timeout=grace_s)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
    for p in alive:
        with contextlib.suppress(psutil.Error):
            p.kill()
    psutil.wait_procs(alive, timeout=5)


# -- the HTTP app --------------------------------------------------------------------------


class _Guard:
    """Pure ASGI middleware: Host/Origin checks, bearer token, body limit — before routing,
    so every route (the OpenAPI docs included) is covered."""

    def __init__(self, app: Any, cfg: DaemonConfig) -> None:
        self.app = app
        self.cfg = cfg
        self._expected = f"Bearer {cfg.token}".encode()

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v for k, v in scope.get("headers", [])}
        deny = self._check(headers)
        if deny is not None:
            await deny(scope, receive, send)
            return
        length = headers.get("content-length")
        if length is not None:
            try:
                n = int(length)
            except ValueError:
                await _error(400, "bad_request", "Content-Length is not a number")(
                    scope, receive, send
                )
                return
            if n > self.cfg.max_body_bytes:
                await self._too_large()(scope, receive, send)
                return
        # Read the body here (bounded), so chunked uploads meet the same limit.
        body = b""
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.cfg.max_body_bytes:
                await self._too_large()(scope, receive, send)
                return
        sent = False

        async def replay() -> dict:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    def _too_large(self):
        return _error(
            413,
            "body_too_large",
            f"the request body exceeds {self.cfg.max_body_bytes} bytes",
        )

    def _check(self, headers: dict[str, bytes]) -> Callable[..., Awaitable[None]] | None:
        if "origin" in headers:
            # No browser has any business here; refusing Origin stops cross-site requests.
            return _error(403, "origin_refused", "requests from a browser origin are refused")
        host = headers.get("host", b"").decode("latin-1").lower()
        if self.cfg.allowed_hosts and _host_name(host) not in self.cfg.allowed_hosts:
            return _error(403, "host_refused", "this Host is not served here", "Host")
        given = headers.get("authorization", b"")
        if not hmac.compare_digest(given, self._expected):
            return _error(
                401,
                "unauthorized",
                "missing or wrong bearer token (header `Authorization: Bearer <token>`)",
                "Authorization",
                **{"WWW-Authenticate": "Bearer"},
            )
        return None


def _host_name(host: str) -> str:
    if host.startswith("["):
        return host.split("]", 1)[0] + "]"
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def create_app(cfg: DaemonConfig, *, start_supervisor: bool = True):
    """The FastAPI app (wrapped in the guard middleware) for ``cfg``.

    Args:
        cfg: the daemon's configuration.
        start_supervisor: run the supervisor thread during the app's lifespan (tests of
            the HTTP surface alone turn it off).

    Returns:
        ``(asgi_app, fastapi_app)``: serve the first; the second has ``.routes`` and
        ``.state.journal``/``.state.supervisor``.
    """
    from contextlib import asynccontextmanager

    cfg.state_dir.mkdir(parents=True, exist_ok=True)
    journal = Journal(cfg.state_dir / JOURNAL_NAME)
    supervisor = Supervisor(cfg, journal)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if start_supervisor:
            supervisor.start()
        try:
            yield
        finally:
            if start_supervisor:
                supervisor.stop()

    app = FastAPI(
        title="annealplan executor",
        version=PROTOCOL_VERSION,
        lifespan=lifespan,
        responses={
            "4XX": {"model": ErrorBody, "description": "error: {code, field, message}"},
        },
    )
    app.state.journal = journal
    app.state.supervisor = supervisor
    app.state.config = cfg

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        errors = exc.errors()
        first = errors[0] if errors else {}
        loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path")]
        msg = first.get("msg", "invalid request")
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        return _error(422, "invalid", f"{msg}{more}", ".".join(loc) or None)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        detail = exc.detail
        if isinstance(detail, dict):
            return _error(
                exc.status_code,
                detail.get("code", "error"),
                detail.get("message", ""),
                detail.get("field"),
                **(exc.headers or {}),
            )
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "error")
        return _error(exc.status_code, code, str(detail), None, **(exc.headers or {}))

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception):
        return _error(500, "internal", f"{type(exc).__name__}: the daemon's log has details")

    def fail(status: int, code: str, message: str, field_: str | None = None, **headers: str):
        raise HTTPException(
            status, {"code": code, "message": message, "field": field_}, headers or None
        )

    def get_record(job_id: str) -> JobRecord:
        rec = journal.record(job_id)
        if rec is None:
            fail(404, "no_such_job", f"no job {job_id!r} on this executor", "job_id")
        return rec

    @app.get("/v1/health", response_model=Health)
    def health() -> Health:
        return Health()

    @app.post("/v1/jobs", response_model=JobRecord, status_code=201)
    def submit(spec: AnnealJobSpec, response: Response) -> JobRecord:
        try:
            check_spec_paths(spec, cfg.root.resolve(), deny=(cfg.state_dir,), plugins=cfg.plugins)
        except PathRefused as e:
            fail(422, "path_refused", e.message, e.field)
        try:
            rec, created = journal.submit(spec, max_queue=cfg.max_queue)
        except SpecConflict:
            fail(
                409,
                "conflict",
                f"job {spec.job_id!r} exists with a different spec; choose a new job id",
                "job_id",
            )
        except QueueFull:
            fail(
                429,
                "queue_full",
                f"{cfg.max_queue} jobs are already waiting or running; retry later",
                None,
                **{"Retry-After": "30"},
            )
        if not created:
            response.status_code = 200
        supervisor.wake()
        return rec

    @app.get("/v1/jobs", response_model=list[JobRecord])
    def list_jobs(state: JobState | None = None) -> list[JobRecord]:
        return journal.records(state)

    @app.get("/v1/jobs/{job_id}", response_model=JobRecord)
    def show(job_id: str) -> JobRecord:
        return get_record(job_id)

    @app.get("/v1/jobs/{job_id}/log", response_model=LogChunk)
    def log(
        job_id: str,
        offset: int = Query(default=0, ge=0, le=2**62),
        limit: int = Query(default=MAX_LOG_CHUNK, ge=1, le=MAX_LOG_CHUNK),
    ) -> LogChunk:
        rec = get_record(job_id)
        path = job_dir(cfg.state_dir, job_id) / LOG_NAME
        data = b""
        size = 0
        if not path.is_file() and rec.attempts > 0:
            # The job ran, so it had a log: it was removed (disk cleanup, a wiped state dir).
            fail(410, "log_gone", f"the log of job {job_id} is gone from this executor")
        if path.is_file():
            with path.open("rb") as fh:
                size = fh.seek(0, os.SEEK_END)
                fh.seek(min(offset, size))
                data = fh.read(limit)
        start = min(offset, size)
        end = start + len(data)
        return LogChunk(
            offset=start,
            next_offset=end,
            text=data.decode("utf-8", errors="replace"),
            final=rec.state.final and end >= size,
        )

    @app.delete("/v1/jobs/{job_id}", response_model=JobRecord)
    def cancel(job_id: str) -> JobRecord:
        get_record(job_id)
        rec = journal.request_cancel(job_id)
        supervisor.wake()
        assert rec is not None
        return rec

    @app.get("/v1/jobs/{job_id}/result", response_model=JobResult)
    def result(job_id: str) -> JobResult:
        rec = get_record(job_id)
        if rec.state is JobState.SUCCEEDED:
            res = journal.result(job_id)
            if res is not None:
                return res
        if rec.state.final:
            why = f": {rec.error.code}: {rec.error.message}" if rec.error else ""
            fail(409, f"job_{rec.state.value}", f"job {job_id} {rec.state.value}{why}", "job_id")
        fail(409, "not_finished", f"job {job_id} is {rec.state.value}; poll until it is final")

    return _Guard(app, cfg), app


# -- the command line ----------------------------------------------------------------------


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def serve(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="annealplan-executor serve", description="Serve the executor's HTTP API."
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8765, help="0: any free port (see --port-file)")
    p.add_argument("--port-file", type=Path, help='write {"port": N} here once listening')
    p.add_argument("--token-file", type=Path, required=True)
    p.add_argument("--root", type=Path, required=True, help="allow-listed root of job paths")
    p.add_argument(
        "--state", type=Path, help="journal, logs, checkpoints (ROOT/.annealplan/executor)"
    )
    p.add_argument("--gpus", type=int, default=1, help="processes per job (GPUs)")
    p.add_argument("--hostfile", type=Path, help="DeepSpeed hostfile for multi-node jobs")
    p.add_argument("--launcher", choices=("deepspeed", "torchrun"), default="deepspeed")
    p.add_argument("--max-jobs", type=int, default=1, help="jobs run at once")
    p.add_argument(
        "--exit-with-parent",
        type=int,
        metavar="PID",
        help="shut down when process PID (the program that started this daemon) exits",
    )
    p.add_argument(
        "--threads-per-job",
        type=int,
        help="CPU threads per job (default: the cores divided by --max-jobs)",
    )
    p.add_argument("--max-queue", type=int, default=256)
    p.add_argument("--max-body-bytes", type=int, default=1 << 20)
    p.add_argument("--peak-flops", type=float, help="per-GPU peak FLOP/s, for MFU")
    p.add_argument(
        "--heartbeat-timeout", type=float, default=120.0, help="seconds of silence = stalled"
    )
    p.add_argument(
        "--worker-stall-timeout",
        type=float,
        help="seconds without a worker heartbeat = stalled (default: --heartbeat-timeout + 30)",
    )
    p.add_argument("--plugin", action="append", default=[], help="extra plugin module")
    p.add_argument("--allow-remote", action="store_true", help="allow a non-loopback bind")
    a = p.parse_args(argv)
    if not _is_loopback(a.host) and not a.allow_remote:
        print(
            f"error: refusing to bind {a.host}: not loopback. Use an SSH tunnel, or pass "
            "--allow-remote behind TLS and a firewall",
            file=sys.stderr,
        )
        return 2
    if a.worker_stall_timeout is not None and a.worker_stall_timeout < 5:
        print(
            "error: --worker-stall-timeout must be at least 5 s (workers beat every 2 s)",
            file=sys.stderr,
        )
        return 2
    try:
        token = read_token_file(a.token_file)
    except TokenFileError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    root = a.root.resolve()
    if not root.is_dir():
        print(f"error: the root {root} is not a folder", file=sys.stderr)
        return 2
    allowed = frozenset()
    if not a.allow_remote:
        allowed = frozenset({*_LOOPBACK_NAMES, a.host})
    cfg = DaemonConfig(
        root=root,
        state_dir=(a.state or root / ".annealplan" / "executor").resolve(),
        token=token,
        max_jobs=max(1, a.max_jobs),
        max_queue=a.max_queue,
        max_body_bytes=a.max_body_bytes,
        gpus=a.gpus,
        hostfile=a.hostfile.resolve() if a.hostfile else None,
        launcher=a.launcher,
        peak_flops=a.peak_flops,
        threads_per_job=a.threads_per_job,
        parent_pid=a.exit_with_parent,
        heartbeat_timeout_s=a.heartbeat_timeout,
        worker_stall_s=a.worker_stall_timeout,
        plugins=tuple(a.plugin),
        allowed_hosts=allowed,
    )
    try:
        # Held until this process exits: never two daemons on one journal.
        _state_lock = lock_state_dir(cfg.state_dir)
    except StateDirLocked as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    import socket

    import uvicorn

    asgi, _ = create_app(cfg)
    # Bind first, so --port 0 can report the port it got before anyone connects.
    family = socket.AF_INET6 if ":" in a.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((a.host.strip("[]"), a.port))
    except OSError as e:
        print(f"error: cannot listen on {a.host}:{a.port}: {e.strerror}", file=sys.stderr)
        return 2
    sock.listen(128)
    port = sock.getsockname()[1]
    if a.port_file is not None:
        tmp = a.port_file.with_name(a.port_file.name + ".tmp")
        tmp.write_text(json.dumps({"port": port, "pid": os.getpid()}))
        os.replace(tmp, a.port_file)
    print(f"annealplan executor listening on {a.host}:{port}", file=sys.stderr, flush=True)
    config = uvicorn.Config(
        asgi,
        log_level="warning",
        access_log=False,  # keep logs free of anything request-shaped
        timeout_graceful_shutdown=10,
        lifespan="on",
    )
    uvicorn.Server(config).run(sockets=[sock])
    return 0


def main(argv: list[str] | None = None) -> int:
    """Console script ``annealplan-executor``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(
            "usage: annealplan-executor serve --token-file F --root DIR [options]\n"
            "       annealplan-executor serve --help"
        )
        return 0 if args else 2
    if args[0] != "serve":
        print(f"error: unknown command {args[0]!r}; use `serve`", file=sys.stderr)
        return 2
    return serve(args[1:])


if __name__ == "__main__":
    sys.exit(main())
