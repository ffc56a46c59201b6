"""The http backend's transport without a daemon: retries and error mapping, with faults
injected through httpx's mock transport (a real daemon cannot lose a reply on demand)."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime

import httpx
import pytest

from executors.protocol import AnnealJobSpec
from plugins.backends.http.client import ExecutorClient
from plugins.errors import ConfigError, ExecutorReplyError

NOW = datetime(2026, 1, 1, tzinfo=UTC).isoformat()
SPEC = AnnealJobSpec.model_validate(
    {
        "job_id": "j-1",
        "base_model": "m",
        "source": None,
        "replay": {"source": {"kind": "files", "config": {}}, "tokens": 100},
    }
)


def _record(job_id: str = "j-1", state: str = "queued") -> dict:
    return {"job_id": job_id, "state": state, "created_at": NOW, "updated_at": NOW}


def _client(handler, sleeps: list[float]) -> ExecutorClient:
    async def fake_sleep(s: float) -> None:
        sleeps.append(s)

    return ExecutorClient(
        "http://exec",
        "tok" * 8,
        transport=httpx.MockTransport(handler),
        sleep=fake_sleep,
        rng=random.Random(0),
        retries=5,
        backoff_s=1.0,
        backoff_max_s=8.0,
    )


async def test_lost_replies_are_retried_with_the_same_job_id():
    bodies: list[dict] = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        if len(bodies) < 3:  # the first two replies are lost on the way back
            raise httpx.RemoteProtocolError("connection reset", request=request)
        return httpx.Response(202, json=_record())

    sleeps: list[float] = []
    async with _client(handler, sleeps) as client:
        record = await client.submit(SPEC)
    assert record.job_id == "j-1"
    assert [b["job_id"] for b in bodies] == ["j-1"] * 3
    assert len(sleeps) == 2 and all(0 <= s <= 2.0 for s in sleeps)


async def test_backoff_is_bounded_exponential_with_jitter_and_gives_up():
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    sleeps: list[float] = []
    async with _client(handler, sleeps) as client:
        with pytest.raises(ExecutorReplyError) as e:
            await client.job("j-1")
    assert e.value.unreachable and e.value.status == 0
    assert len(sleeps) == 5
    assert all(0 <= s <= min(8.0, 2**i) for i, s in enumerate(sleeps))
    assert len(set(sleeps)) == 5  # jittered, not a fixed schedule


async def test_retry_after_is_honoured_and_4xx_is_not_retried():
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.method)
        if request.method == "POST" and len(calls) == 1:
            body = {"code": "queue_full", "field": None, "message": "full"}
            return httpx.Response(429, json=body, headers={"Retry-After": "7"})
        body = {"code": "conflict", "field": "job_id", "message": "different spec"}
        return httpx.Response(409, json=body)

    sleeps: list[float] = []
    async with _client(handler, sleeps) as client:
        with pytest.raises(ExecutorReplyError) as e:
            await client.submit(SPEC)
    assert sleeps == [7.0]
    assert (e.value.status, e.value.code, e.value.field) == (409, "conflict", "job_id")
    assert len(calls) == 2


async def test_the_backend_reads_the_token_file_at_each_connection(tmp_path):
    from plugins.manager import load_registry

    http = load_registry(entry_points=False).executor_backend("http")
    token = tmp_path / "tok"
    token.write_text("")
    settings = http.parse_settings({"url": "http://127.0.0.1:1/", "token_file": str(token)})
    assert http.where(settings) == "http://127.0.0.1:1"
    with pytest.raises(ConfigError, match="is empty; put the executor's token in it"):
        http.connect(settings, name="gpu1", project_dir=tmp_path)
    token.write_text("y" * 32 + "\n")
    client = http.connect(settings, name="gpu1", project_dir=tmp_path, retries=1)
    try:
        assert (client.name, client.url, client.retries) == ("gpu1", "http://127.0.0.1:1", 1)
        with pytest.raises(ExecutorReplyError, match="executor gpu1 unreachable") as e:
            await client.health()  # nothing listens on port 1
        assert e.value.unreachable
    finally:
        await client.aclose()
