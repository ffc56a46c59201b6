"""``RaySubmitter``: the ``ray`` backend's :class:`~plugins.contract.JobSubmitter`, on
Ray's ``JobSubmissionClient``.

One anneal is one Ray job whose submission id is the job's id, so Ray itself keeps a
second submission of the id from running twice; the spec's hash in the job's metadata
tells the same job (idempotent) from another spec under that id (a conflict). The entry
point runs ``python -m executors.batch --term-is-cancel`` (Ray stops a job with SIGTERM
only when asked to). Its record (state, attempts, error) and result are lines of its log
(``@@annealplan-status``/``@@annealplan-result``), and its progress the trainer's own
lines, so everything comes back through Ray's API; Ray's own state wins where the job
could not say (a runtime env that failed to set up, a stop).

Ray delivers a stop to a job still waiting for resources only when the job would start
(its supervisor is created with the job's resources): a cancelled queued job is recorded
in the planner's project folder, so it reads as cancelled at once, as on the daemon, and
Ray stops it as soon as it is scheduled.

The client is synchronous (``requests``): every call runs in a thread. A head that does
not answer is the daemon's 503 (dispatch keeps the job where it is and retries).
"""

from __future__ import annotations

import asyncio
import json
import shlex
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from executors.batch import SPEC_ENV, parse_lines
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
from plugins.backends.ray.client import job_client
from plugins.errors import ConfigError, ExecutorReplyError

if TYPE_CHECKING:
    from plugins.backends.ray import RaySettings

_T = TypeVar("_T")
#: metadata keys of an annealplan job on Ray
META_EXECUTOR = "annealplan_executor"
META_SPEC = "annealplan_spec_hash"
META_LABELS = "annealplan_labels"
_PACKAGES = ("executors", "plugins")
#: what the head answers while its job agent is not up yet (a head that just started, or
#: one too busy to register the agent in Ray's own 10 s)
NO_AGENT = "No available agent to submit job"
#: the code of that answer (a 503: the head is not available yet)
NO_AGENT_CODE = "ray_no_agent"
#: how long a submit waits for the head's job agent before it is "unavailable"
AGENT_WAIT_S = 180.0
AGENT_RETRY_S = 2.0


def _when(ms: int | None) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC) if ms else datetime.now(UTC)


def code_modules() -> list[str]:
    """This planner's own packages, sent with every job (``py_modules``)."""
    import executors
    import plugins

    return [str(Path(m.__file__).resolve().parent) for m in (executors, plugins)]


class RaySubmitter:
    """Runs jobs as Ray jobs on the cluster at ``settings.address``."""

    backend = "ray"

    def __init__(self, settings: RaySettings, *, name: str, project_dir: Path) -> None:
        self.settings = settings
        self.name = name
        self.url = settings.address
        self.root = Path(settings.root).expanduser()
        self.state = scheduled.state_dir(self.root, settings.state, name)
        #: queued jobs this planner cancelled (Ray stops them when they would start)
        self.cancelled = Path(project_dir) / ".annealplan" / "ray" / name / "cancelled"
        self._client: Any = None
        #: final records and results: a final job never changes
        self._final: dict[str, tuple[JobRecord, JobResult | None]] = {}

    # -- plumbing -------------------------------------------------------------------------

    def _jobs_client(self) -> Any:
        if self._client is None:
            self._client = job_client(self.settings.address)
        return self._client

    async def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """Call the job client in a thread; its failures as the daemon's replies."""

        def call() -> Any:
            return getattr(self._jobs_client(), method)(*args, **kwargs)

        try:
            return await asyncio.to_thread(call)
        except ConfigError:
            raise
        except OSError as e:  # ConnectionError, and requests' errors
            self._client = None
            raise scheduled.unavailable(
                self.name,
                f"the Ray head at {self.settings.address} does not answer ({e}); start it or "
                "reach it (an SSH tunnel), then try again",
            ) from None
        except RuntimeError as e:
            text = str(e)
            if NO_AGENT in text:
                e = scheduled.unavailable(
                    self.name,
                    f"the Ray head at {self.settings.address} has no job agent up yet (Ray: "
                    f"{NO_AGENT.lower()}); wait for the head to finish starting, then try again",
                )
                e.code = NO_AGENT_CODE
                raise e from None
            if "status code 404" in text or "does not exist" in text:
                job_id = args[0] if args else kwargs.get("submission_id", "")
                raise scheduled.no_such_job(self.name, str(job_id)) from None
            first = text.strip().splitlines()[-1] if text.strip() else type(e).__name__
            raise ExecutorReplyError(
                f"executor {self.name}: Ray refused: {first}", status=400, code="ray_refused"
            ) from None

    def _ours(self, info: Any) -> bool:
        return bool(info.metadata) and META_SPEC in info.metadata

    def entrypoint(self, job_id: str) -> str:
        """The job's command on the node: the worker's stages for one job."""
        command = [
            self.settings.python,
            "-m",
            "executors.batch",
            "--state",
            str(self.state),
            "--root",
            str(self.root),
            "--job-id",
            job_id,
            "--gpus",
            str(max(1, self.settings.gpus)),
            "--term-is-cancel",
        ]
        return "exec " + shlex.join(command)

    def runtime_env(self, spec: AnnealJobSpec) -> dict[str, Any]:
        """Ray's runtime_env for one job: the project's code, the job's spec, the user's."""
        env = dict(self.settings.runtime_env)
        env["env_vars"] = {**dict(env.get("env_vars") or {}), SPEC_ENV: spec.model_dump_json()}
        if self.settings.upload_code:
            env["py_modules"] = [*code_modules(), *list(env.get("py_modules") or [])]
            env["excludes"] = [*list(env.get("excludes") or []), "__pycache__", "*.pyc"]
        return env

    def _record(self, info: Any, logs: str | None) -> tuple[JobRecord, JobResult | None]:
        """The job's record from Ray's view of it and its log."""
        job_id = info.submission_id
        labels = json.loads((info.metadata or {}).get(META_LABELS) or "{}")
        status = str(getattr(info.status, "value", info.status)).upper()
        base = JobRecord(
            job_id=job_id,
            state=JobState.QUEUED,
            labels=labels,
            created_at=_when(info.start_time),
            updated_at=datetime.now(UTC),
        )
        said, result, progress = parse_lines(logs or "")
        record = said or base
        if progress is not None and not record.state.final:
            record = record.model_copy(update={"progress": progress})
        ended = _when(info.end_time) if info.end_time else datetime.now(UTC)

        def final(state: JobState, code: str, message: str, **more: Any) -> JobRecord:
            return record.model_copy(
                update={
                    "state": state,
                    "error": JobError(code=code, message=message),
                    "updated_at": ended,
                    "finished_at": ended,
                    **more,
                }
            )

        if record.state is JobState.SUCCEEDED and result is not None:
            return record, result
        if (self.cancelled / job_id).is_file() and record.state is not JobState.CANCELLED:
            return final(
                JobState.CANCELLED,
                "cancelled",
                "cancelled while queued (Ray stops it when it would start)",
                cancel_requested=True,
            ), None
        if status in ("PENDING", "RUNNING"):
            return record, None
        if status == "STOPPED":
            if record.state is not JobState.CANCELLED:
                record = final(
                    JobState.CANCELLED, "cancelled", "cancelled on request", cancel_requested=True
                )
            return record.model_copy(update={"cancel_requested": True}), None
        if record.state.final and record.state is not JobState.SUCCEEDED:
            return record, None
        if status == "SUCCEEDED":
            return final(
                JobState.FAILED, "no_result", "the job's entry point ended without a result"
            ), None
        why = (info.message or "").strip() or f"Ray job {status.lower()}"
        return final(JobState.FAILED, f"ray_{status.lower()}", f"{why}; see its log"), None

    async def _fetch(self, info: Any) -> tuple[JobRecord, JobResult | None]:
        job_id = info.submission_id
        if job_id in self._final:
            return self._final[job_id]
        status = str(getattr(info.status, "value", info.status)).upper()
        logs = None if status == "PENDING" else await self._call("get_job_logs", job_id)
        found = self._record(info, logs)
        if found[0].state.final and status not in ("PENDING", "RUNNING"):
            self._final[job_id] = found
        return found

    async def _info(self, job_id: str) -> Any:
        info = await self._call("get_job_info", job_id)
        if not self._ours(info):
            raise scheduled.no_such_job(self.name, job_id)
        return info

    # -- the protocol ---------------------------------------------------------------------

    async def health(self) -> Health:
        await self._call("get_version")
        return Health(ok=True, protocol=PROTOCOL_VERSION)

    async def submit(self, spec: AnnealJobSpec) -> JobRecord:
        """Submit one job (idempotent: Ray keeps one job per submission id).

        Raises:
            ExecutorReplyError: 409 the id exists with another spec; 503 the head does
                not answer (nothing was submitted).
        """
        try:
            return await self._same(spec)
        except ExecutorReplyError as e:
            if e.status != 404:
                raise
        metadata = {
            META_EXECUTOR: self.name,
            META_SPEC: spec.spec_hash(),
            META_LABELS: json.dumps(dict(spec.labels), sort_keys=True),
        }
        loop = asyncio.get_running_loop()
        deadline = loop.time() + AGENT_WAIT_S
        while True:
            try:
                await self._call(
                    "submit_job",
                    entrypoint=self.entrypoint(spec.job_id),
                    submission_id=spec.job_id,
                    runtime_env=self.runtime_env(spec),
                    metadata=metadata,
                    entrypoint_num_cpus=self.settings.cpus,
                    entrypoint_num_gpus=self.settings.gpus or None,
                )
                break
            except ExecutorReplyError as e:
                if e.code == "ray_refused" and "already exists" in e.msg:
                    return await self._same(spec)  # another planner submitted it just now
                if e.code == NO_AGENT_CODE and loop.time() < deadline:
                    # the head answers but its job agent is still starting: nothing was
                    # submitted, so submitting again is safe
                    await asyncio.sleep(AGENT_RETRY_S)
                    continue
                raise
        return await self.job(spec.job_id)

    async def _same(self, spec: AnnealJobSpec) -> JobRecord:
        """The job already under ``spec.job_id`` when its spec is the same.

        Raises:
            ExecutorReplyError: 404 no such job; 409 another spec holds the id.
        """
        info = await self._call("get_job_info", spec.job_id)
        if (info.metadata or {}).get(META_SPEC) != spec.spec_hash():
            raise scheduled.conflict(self.name, spec.job_id)
        return (await self._fetch(info))[0]

    async def job(self, job_id: str) -> JobRecord:
        return (await self._fetch(await self._info(job_id)))[0]

    async def jobs(self, state: JobState | None = None) -> list[JobRecord]:
        infos = await self._call("list_jobs")
        records = []
        for info in infos:
            if info.submission_id and (info.metadata or {}).get(META_EXECUTOR) == self.name:
                records.append((await self._fetch(info))[0])
        records.sort(key=lambda r: (r.created_at, r.job_id))
        return [r for r in records if state is None or r.state is state]

    async def result(self, job_id: str) -> JobResult:
        record, result = await self._fetch(await self._info(job_id))
        return scheduled.result_or_refusal(self.name, record, result)

    async def log(self, job_id: str, offset: int = 0, limit: int = 65536) -> LogChunk:
        record = await self.job(job_id)
        text = await self._call("get_job_logs", job_id)
        return scheduled.chunk(text.encode(), offset, limit, final_state=record.state.final)

    async def cancel(self, job_id: str) -> JobRecord:
        """Cancel (idempotent): ``stop_job``, which sends the job's processes SIGTERM."""
        info = await self._info(job_id)
        record, _ = await self._fetch(info)
        if record.state.final:
            return record
        if str(getattr(info.status, "value", info.status)).upper() == "PENDING":
            self.cancelled.mkdir(parents=True, exist_ok=True)
            (self.cancelled / job_id).touch()
        await self._call("stop_job", job_id)
        record = await self.job(job_id)
        return record.model_copy(update={"cancel_requested": True})

    async def aclose(self) -> None:
        self._client = None
