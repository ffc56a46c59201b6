"""The daemon's HTTP API: FastAPI routes over the journal, behind the guard.

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

Every 4xx and 5xx answer has the body ``{code, field, message}``. The routes only translate
HTTP: the journal holds the jobs, the supervisor runs them. Both live on ``app.state`` and
reach the routes as dependencies.
"""

from __future__ import annotations

import functools
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any, NoReturn

import anyio
from fastapi import Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from executors.admission import Refused, admit
from executors.daemon.config import DaemonConfig
from executors.daemon.guard import Guard, error_response
from executors.daemon.supervisor import Supervisor
from executors.journal import Journal, QueueFull, SpecConflict
from executors.protocol import (
    MAX_JSON_DEPTH,
    PROTOCOL_VERSION,
    AnnealJobSpec,
    ErrorBody,
    Health,
    JobRecord,
    JobResult,
    JobState,
    LogChunk,
)
from executors.stages.context import JOURNAL_NAME, JobFiles, job_dir

MAX_LOG_CHUNK = 256 * 1024
#: submissions checked at once (each may walk the file system for up to a few seconds)
SUBMIT_THREADS = 4


# -- dependencies --------------------------------------------------------------------------


def _journal(request: Request) -> Journal:
    return request.app.state.journal


def _config(request: Request) -> DaemonConfig:
    return request.app.state.config


def _supervisor(request: Request) -> Supervisor:
    return request.app.state.supervisor


JournalDep = Annotated[Journal, Depends(_journal)]
ConfigDep = Annotated[DaemonConfig, Depends(_config)]
SupervisorDep = Annotated[Supervisor, Depends(_supervisor)]


def _fail(
    status: int, code: str, message: str, field_: str | None = None, **headers: str
) -> NoReturn:
    raise HTTPException(
        status, {"code": code, "message": message, "field": field_}, headers or None
    )


def _record(journal: Journal, job_id: str) -> JobRecord:
    rec = journal.record(job_id)
    if rec is None:
        _fail(404, "no_such_job", f"no job {job_id!r} on this executor", "job_id")
    return rec


# -- routes --------------------------------------------------------------------------------


def health() -> Health:
    return Health()


async def submit(
    spec: AnnealJobSpec,
    request: Request,
    response: Response,
    journal: JournalDep,
    cfg: ConfigDep,
    supervisor: SupervisorDep,
) -> JobRecord:
    # Checking a job walks the file system (its globs) and writes the journal: in threads
    # of their own, so that slow submissions never hold the threads of the other routes.
    rec, created = await anyio.to_thread.run_sync(
        functools.partial(_admit_and_queue, spec, journal, cfg),
        limiter=request.app.state.submit_limiter,
    )
    if not created:
        response.status_code = 200
    supervisor.wake()
    return rec


def _admit_and_queue(
    spec: AnnealJobSpec, journal: Journal, cfg: DaemonConfig
) -> tuple[JobRecord, bool]:
    try:
        admit(spec, cfg.root.resolve(), deny=(cfg.state_dir,), plugins=cfg.plugins)
    except Refused as e:
        _fail(422, e.code, e.message, e.field)
    try:
        return journal.submit(spec, max_queue=cfg.max_queue)
    except SpecConflict:
        _fail(
            409,
            "conflict",
            f"job {spec.job_id!r} exists with a different spec; choose a new job id",
            "job_id",
        )
    except QueueFull:
        _fail(
            429,
            "queue_full",
            f"{cfg.max_queue} jobs are already waiting or running; retry later",
            None,
            **{"Retry-After": "30"},
        )


def list_jobs(journal: JournalDep, state: JobState | None = None) -> list[JobRecord]:
    return journal.records(state)


def show(job_id: str, journal: JournalDep) -> JobRecord:
    return _record(journal, job_id)


def log(
    job_id: str,
    journal: JournalDep,
    cfg: ConfigDep,
    offset: int = Query(default=0, ge=0, le=2**62),
    limit: int = Query(default=MAX_LOG_CHUNK, ge=1, le=MAX_LOG_CHUNK),
) -> LogChunk:
    rec = _record(journal, job_id)
    path = JobFiles(job_dir(cfg.state_dir, job_id)).log
    if not path.is_file() and rec.attempts > 0:
        # The job ran, so it had a log: it was removed (disk cleanup, a wiped state dir).
        _fail(410, "log_gone", f"the log of job {job_id} is gone from this executor")
    data = b""
    size = 0
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


def cancel(job_id: str, journal: JournalDep, supervisor: SupervisorDep) -> JobRecord:
    _record(journal, job_id)
    rec = journal.request_cancel(job_id)
    supervisor.wake()
    assert rec is not None
    return rec


def result(job_id: str, journal: JournalDep) -> JobResult:
    rec = _record(journal, job_id)
    if rec.state is JobState.SUCCEEDED:
        res = journal.result(job_id)
        if res is not None:
            return res
    if rec.state.final:
        why = f": {rec.error.code}: {rec.error.message}" if rec.error else ""
        _fail(409, f"job_{rec.state.value}", f"job {job_id} {rec.state.value}{why}", "job_id")
    _fail(409, "not_finished", f"job {job_id} is {rec.state.value}; poll until it is final")


#: method, path, route function, and how FastAPI documents its answer
ROUTES: tuple[tuple[str, str, Callable[..., Any], dict[str, Any]], ...] = (
    ("GET", "/v1/health", health, {"response_model": Health}),
    ("POST", "/v1/jobs", submit, {"response_model": JobRecord, "status_code": 201}),
    ("GET", "/v1/jobs", list_jobs, {"response_model": list[JobRecord]}),
    ("GET", "/v1/jobs/{job_id}", show, {"response_model": JobRecord}),
    ("GET", "/v1/jobs/{job_id}/log", log, {"response_model": LogChunk}),
    ("DELETE", "/v1/jobs/{job_id}", cancel, {"response_model": JobRecord}),
    ("GET", "/v1/jobs/{job_id}/result", result, {"response_model": JobResult}),
)


# -- error bodies --------------------------------------------------------------------------


async def _invalid(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    first = errors[0] if errors else {}
    loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path")]
    msg = first.get("msg", "invalid request").removeprefix("Value error, ")
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return error_response(422, "invalid", f"{msg}{more}", ".".join(loc) or None)


async def _http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail
    headers = exc.headers or {}
    if isinstance(detail, dict):
        code, message = detail.get("code", "error"), detail.get("message", "")
        return error_response(exc.status_code, code, message, detail.get("field"), **headers)
    if isinstance(exc.__cause__, RecursionError):
        # the JSON parser's own limit, far above what a spec may nest
        return error_response(
            422,
            "invalid",
            f"the JSON body nests too deeply to parse; a config may nest {MAX_JSON_DEPTH} levels",
        )
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "error")
    return error_response(exc.status_code, code, str(detail), None, **headers)


async def _crash(request: Request, exc: Exception) -> JSONResponse:
    return error_response(500, "internal", f"{type(exc).__name__}: the daemon's log has details")


# -- the app -------------------------------------------------------------------------------


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Run the supervisor while the app serves (unless the app was made without it)."""
    supervisor: Supervisor = app.state.supervisor
    if app.state.start_supervisor:
        supervisor.start()
    try:
        yield
    finally:
        if app.state.start_supervisor:
            supervisor.stop()


def create_app(cfg: DaemonConfig, *, start_supervisor: bool = True) -> tuple[Guard, FastAPI]:
    """The FastAPI app (wrapped in the guard middleware) for ``cfg``.

    Args:
        cfg: the daemon's configuration.
        start_supervisor: run the supervisor thread during the app's lifespan (tests of
            the HTTP surface alone turn it off).

    Returns:
        ``(asgi_app, fastapi_app)``: serve the first; the second has ``.routes`` and
        ``.state.journal``/``.state.supervisor``.
    """
    cfg.state_dir.mkdir(parents=True, exist_ok=True)
    journal = Journal(cfg.state_dir / JOURNAL_NAME)
    supervisor = Supervisor(cfg, journal)
    app = FastAPI(
        title="annealplan executor",
        version=PROTOCOL_VERSION,
        lifespan=_lifespan,
        responses={
            "4XX": {"model": ErrorBody, "description": "error: {code, field, message}"},
        },
    )
    app.state.journal = journal
    app.state.supervisor = supervisor
    app.state.config = cfg
    app.state.start_supervisor = start_supervisor
    app.state.submit_limiter = anyio.CapacityLimiter(SUBMIT_THREADS)
    handlers: dict[Any, Any] = {
        RequestValidationError: _invalid,
        StarletteHTTPException: _http,
        Exception: _crash,
    }
    for exc_class, handler in handlers.items():
        app.add_exception_handler(exc_class, handler)
    for method, path, endpoint, documented in ROUTES:
        app.add_api_route(path, endpoint, methods=[method], **documented)
    return Guard(app, cfg), app
