"""``ExecutorClient``: the http backend's transport, the executor protocol on
``httpx.AsyncClient`` (a :class:`~plugins.contract.JobSubmitter`).

Every call has explicit timeouts. Transport errors and 429/5xx replies are retried with
exponential backoff and full jitter (honouring ``Retry-After``); a retried submit sends the
same job id, so a lost reply never becomes a second job. Other 4xx replies are not retried:
they become :class:`~plugins.errors.ExecutorReplyError` carrying the daemon's
``{code, field, message}``.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

from executors.protocol import (
    PROTOCOL_VERSION,
    AnnealJobSpec,
    ErrorBody,
    Health,
    JobRecord,
    JobResult,
    JobState,
    LogChunk,
)
from plugins.errors import RETRY_STATUSES, ConfigError, ExecutorReplyError

DEFAULT_TIMEOUT = httpx.Timeout(connect=5.0, read=30.0, write=30.0, pool=5.0)


def read_token(path: str | Path) -> str:
    """Read a bearer token from a file.

    Raises:
        ConfigError: the file cannot be read or is empty.
    """
    try:
        token = Path(path).expanduser().read_text().strip()
    except OSError as e:
        raise ConfigError(f"cannot read the token file {path}: {e.strerror}") from None
    if not token:
        raise ConfigError(f"the token file {path} is empty; put the executor's token in it")
    return token


class ExecutorClient:
    """Talks to one executor daemon."""

    def __init__(
        self,
        url: str,
        token: str,
        *,
        name: str = "",
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        retries: int = 6,
        backoff_s: float = 0.5,
        backoff_max_s: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        rng: random.Random | Callable[[], float] | None = None,
        backoff: float | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.name = name or self.url
        self.retries = retries
        # ``backoff`` is the same knob as ``backoff_s`` (both spellings are in use).
        self.backoff_s = backoff_s if backoff is None else backoff
        self.backoff_max_s = backoff_max_s
        self._sleep = sleep
        if callable(rng) and not isinstance(rng, random.Random):
            # A bare ``random.random``-like callable: uniform(a, b) from it.
            draw = rng
            rng = random.Random()
            rng.random = draw  # type: ignore[method-assign]
        self._rng = rng or random.Random()
        if not isinstance(timeout, httpx.Timeout):
            timeout = httpx.Timeout(float(timeout), connect=min(5.0, float(timeout)))
        self._http = httpx.AsyncClient(
            base_url=self.url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout,
            transport=transport,
            follow_redirects=False,
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> ExecutorClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def backoff(self, attempt: int) -> float:
        """Full jitter: uniform in [0, min(max, base·2^attempt)]."""
        return self._rng.uniform(0.0, min(self.backoff_max_s, self.backoff_s * 2**attempt))

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        last: ExecutorReplyError | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                delay = self.backoff(attempt - 1)
                if last is not None and last.status == 429:
                    delay = max(delay, last.retry_after)
                await self._sleep(delay)
            try:
                resp = await self._http.request(method, path, **kwargs)
            except httpx.TransportError as e:
                last = ExecutorReplyError(
                    f"executor {self.name} unreachable ({type(e).__name__}: {e}); check that "
                    "it runs and the URL is right",
                )
                continue
            if resp.status_code < 400:
                return resp
            err = self._error(resp)
            if resp.status_code in RETRY_STATUSES:
                err.retry_after = _retry_after(resp)
                last = err
                continue
            raise err
        assert last is not None
        raise last

    def _error(self, resp: httpx.Response) -> ExecutorReplyError:
        try:
            body = ErrorBody.model_validate(resp.json())
            where = f" ({body.field})" if body.field else ""
            return ExecutorReplyError(
                f"executor {self.name}: {body.message}{where}",
                status=resp.status_code,
                code=body.code,
                field=body.field,
            )
        except Exception:
            return ExecutorReplyError(
                f"executor {self.name} answered HTTP {resp.status_code}",
                status=resp.status_code,
                code=f"http_{resp.status_code}",
            )

    # -- the protocol ---------------------------------------------------------------------

    async def health(self) -> Health:
        health = Health.model_validate((await self._request("GET", "/v1/health")).json())
        if health.protocol != PROTOCOL_VERSION:
            raise ExecutorReplyError(
                f"executor {self.name} speaks protocol {health.protocol}, this planner "
                f"{PROTOCOL_VERSION}; upgrade the older side",
                status=200,
                code="protocol_mismatch",
            )
        return health

    async def submit(self, spec: AnnealJobSpec) -> JobRecord:
        """Submit (idempotent: the same spec under the same id is one job)."""
        resp = await self._request("POST", "/v1/jobs", json=spec.model_dump(mode="json"))
        return JobRecord.model_validate(resp.json())

    async def job(self, job_id: str) -> JobRecord:
        return JobRecord.model_validate((await self._request("GET", f"/v1/jobs/{job_id}")).json())

    async def jobs(self, state: JobState | None = None) -> list[JobRecord]:
        params = {"state": state.value} if state else None
        resp = await self._request("GET", "/v1/jobs", params=params)
        return [JobRecord.model_validate(r) for r in resp.json()]

    async def cancel(self, job_id: str) -> JobRecord:
        resp = await self._request("DELETE", f"/v1/jobs/{job_id}")
        return JobRecord.model_validate(resp.json())

    async def result(self, job_id: str) -> JobResult:
        resp = await self._request("GET", f"/v1/jobs/{job_id}/result")
        return JobResult.model_validate(resp.json())

    async def log(self, job_id: str, offset: int = 0, limit: int = 65536) -> LogChunk:
        resp = await self._request(
            "GET", f"/v1/jobs/{job_id}/log", params={"offset": offset, "limit": limit}
        )
        return LogChunk.model_validate(resp.json())


def _retry_after(resp: httpx.Response) -> float:
    try:
        return max(0.0, float(resp.headers.get("retry-after", "0")))
    except ValueError:
        return 0.0
