"""The client's retries: a lost reply or an unreachable daemon never becomes a second job."""

from __future__ import annotations

import json
import random
from pathlib import Path

import httpx
import pytest

from executors.daemon import DaemonConfig, create_app
from executors.protocol import AnnealJobSpec
from planner.errors import ExecutorError
from plugins.backends.http.client import ExecutorClient

TOKEN = "k" * 40


class Flaky(httpx.AsyncBaseTransport):
    """Forwards to the in-process daemon; the first ``lose`` submits reach it but their
    replies are lost, and the first ``refuse`` requests never reach it at all."""

    def __init__(self, inner: httpx.AsyncBaseTransport, *, lose: int = 0, refuse: int = 0):
        self.inner, self.lose, self.refuse = inner, lose, refuse
        self.bodies: list[dict] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.refuse > 0:
            self.refuse -= 1
            raise httpx.ConnectError("connection refused", request=request)
        if request.method == "POST":
            self.bodies.append(json.loads(request.content))
        response = await self.inner.handle_async_request(request)
        if request.method == "POST" and self.lose > 0:
            self.lose -= 1
            await response.aread()
            raise httpx.ReadError("connection reset by peer", request=request)
        return response


@pytest.fixture
def daemon(tmp_path: Path):
    (tmp_path / "model").mkdir()
    cfg = DaemonConfig(root=tmp_path, state_dir=tmp_path / "state", token=TOKEN)
    return create_app(cfg, start_supervisor=False)


def _spec() -> AnnealJobSpec:
    return AnnealJobSpec.model_validate(
        {
            "job_id": "sweep-job-7",
            "base_model": "model",
            "source": {"kind": "files", "config": {"paths": ["d.jsonl"]}, "tokens": 4096},
            "replay": {"source": {"kind": "files", "config": {"paths": ["r.jsonl"]}}},
        }
    )


async def test_lost_replies_are_retried_with_the_same_job_id(daemon):
    asgi, app = daemon
    flaky = Flaky(httpx.ASGITransport(app=asgi), lose=3, refuse=2)
    delays: list[float] = []

    async def sleep(s: float) -> None:
        delays.append(s)

    client = ExecutorClient(
        "http://127.0.0.1",
        TOKEN,
        transport=flaky,
        sleep=sleep,
        rng=random.Random(1),
        retries=8,
        backoff_s=0.5,
    )
    async with client:
        record = await client.submit(_spec())
    assert record.job_id == "sweep-job-7"
    assert len(flaky.bodies) == 4  # three lost replies, then one answered
    assert {b["job_id"] for b in flaky.bodies} == {"sweep-job-7"}
    assert [r.job_id for r in app.state.journal.records()] == ["sweep-job-7"]
    # Backoff: 5 retries, each within its exponential cap (full jitter).
    assert len(delays) == 5
    assert all(0 <= d <= 0.5 * 2**i for i, d in enumerate(delays))
    assert len(set(delays)) == len(delays)


async def test_gives_up_with_a_clear_error_and_does_not_retry_4xx(daemon):
    asgi, _ = daemon
    slept: list[float] = []

    async def sleep(s: float) -> None:
        slept.append(s)

    down = Flaky(httpx.ASGITransport(app=asgi), refuse=100)
    async with ExecutorClient(
        "http://127.0.0.1", TOKEN, transport=down, sleep=sleep, retries=3
    ) as c:
        with pytest.raises(ExecutorError, match="unreachable"):
            await c.health()
    assert len(slept) == 3
    slept.clear()
    up = httpx.ASGITransport(app=asgi)
    async with ExecutorClient("http://127.0.0.1", "wrong" * 8, transport=up, sleep=sleep) as c:
        with pytest.raises(ExecutorError, match="bearer token"):
            await c.health()
    assert slept == []
