"""T4, T5, T6 and T17 (client side): idempotent submission against the real daemon, a lost
reply, a long outage under a fake clock, and which failures the planner retries."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct

import httpx

from executors.protocol import AnnealJobSpec
from plugins.backends.http.client import ExecutorClient
from plugins.errors import ExecutorReplyError

from .conftest import TOKEN, spec


async def test_t4_concurrent_identical_submissions_make_one_job_and_409_survives_restart(daemon):
    d = daemon()
    async with httpx.AsyncClient(base_url=d.url, headers=d.headers, timeout=60) as c:
        replies = await asyncio.gather(*(c.post("/v1/jobs", json=spec("same")) for _ in range(100)))
        # Stop it before a worker gets far; the answers below must not depend on its state.
        await c.delete("/v1/jobs/same")
        codes = sorted(r.status_code for r in replies)
        assert codes.count(201) == 1 and codes.count(200) == 99, codes
        first = {(r.json()["job_id"], r.json()["created_at"]) for r in replies}
        assert first == {("same", replies[0].json()["created_at"])}
        listed = (await c.get("/v1/jobs")).json()
        assert [j["job_id"] for j in listed] == ["same"]
        r = await c.post("/v1/jobs", json=spec("same", tokens=2))
        assert r.status_code == 409 and r.json()["code"] == "conflict"
    d.kill9()
    d2 = daemon()
    async with httpx.AsyncClient(base_url=d2.url, headers=d2.headers, timeout=60) as c:
        r = await c.post("/v1/jobs", json=spec("same", tokens=2))
        assert r.status_code == 409 and r.json()["field"] == "job_id"
        r = await c.post("/v1/jobs", json=spec("same"))
        assert r.status_code == 200 and r.json()["created_at"] == replies[0].json()["created_at"]
        assert len((await c.get("/v1/jobs")).json()) == 1


class _ResettingProxy:
    """Loopback TCP proxy that forwards each request but, for the first ``POST /v1/jobs``,
    drops the daemon's reply and resets the client's connection (RST)."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.reset_done = False
        self.posts = 0
        self.server: asyncio.AbstractServer | None = None
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_r, up_w = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                body = await reader.readexactly(length)
                up_w.write(head + body)
                await up_w.drain()
                resp_head = await up_r.readuntil(b"\r\n\r\n")
                n = 0
                for line in resp_head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        n = int(line.split(b":", 1)[1])
                resp_body = await up_r.readexactly(n)
                if head.startswith(b"POST /v1/jobs"):
                    self.posts += 1
                    if not self.reset_done:
                        self.reset_done = True  # the daemon has the job; the client never hears
                        sock = writer.get_extra_info("socket")
                        sock.setsockopt(
                            socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                        )
                        writer.transport.abort()
                        return
                writer.write(resp_head + resp_body)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            up_w.close()
            with contextlib.suppress(Exception):
                writer.close()

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


async def test_t5_lost_submit_reply_is_retried_under_the_same_id(daemon):
    d = daemon()
    proxy = _ResettingProxy(d.port)
    await proxy.start()
    slept: list[float] = []

    async def fake_sleep(s: float) -> None:
        slept.append(s)

    client = ExecutorClient(
        f"http://127.0.0.1:{proxy.port}", TOKEN, sleep=fake_sleep, retries=3, backoff_s=0.01
    )
    try:
        rec = await client.submit(AnnealJobSpec.model_validate(spec("lost")))
        assert rec.job_id == "lost"
        await client.cancel("lost")
    finally:
        await client.aclose()
        await proxy.stop()
    assert proxy.reset_done and proxy.posts == 2 and len(slept) == 1
    jobs = httpx.get(f"{d.url}/v1/jobs", headers=d.headers).json()
    assert [j["job_id"] for j in jobs] == ["lost"]


class _Outage(httpx.AsyncBaseTransport):
    """Refuses to connect for the first ``down`` requests, then forwards to ``inner``."""

    def __init__(self, inner: httpx.AsyncBaseTransport, down: int) -> None:
        self.inner = inner
        self.down = down
        self.seen: list[tuple[str, str, bytes]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        self.seen.append((request.method, request.url.path, body))
        if self.down > 0:
            self.down -= 1
            raise httpx.ConnectError("connection refused", request=request)
        return await self.inner.handle_async_request(request)


async def test_t6_long_outage_backs_off_with_jitter_and_never_changes_the_id(app):
    asgi, fastapi_app = app
    outage = _Outage(httpx.ASGITransport(app=asgi), down=40)
    slept: list[float] = []

    async def fake_sleep(s: float) -> None:
        slept.append(s)

    client = ExecutorClient(
        "http://127.0.0.1",
        TOKEN,
        transport=outage,
        sleep=fake_sleep,
        retries=60,
        backoff_s=0.5,
        backoff_max_s=30.0,
    )
    try:
        rec = await client.submit(AnnealJobSpec.model_validate(spec("outage")))
    finally:
        await client.aclose()
    assert rec.job_id == "outage"
    assert len(slept) == 40 and all(0.0 <= s <= 30.0 for s in slept)
    assert len({round(s, 6) for s in slept}) > 30, "no jitter"
    # The fake clock advanced for minutes: the planner waited instead of hammering.
    assert sum(slept) > 5 * 60
    bodies = {b for m, p, b in outage.seen if m == "POST"}
    assert len(bodies) == 1, "a retry changed the request"
    assert len(fastapi_app.state.journal.records()) == 1


async def test_t17_validation_failures_are_never_retried(app):
    asgi, _ = app
    counting = _Outage(httpx.ASGITransport(app=asgi), down=0)

    async def no_sleep(s: float) -> None:
        raise AssertionError("a validation failure was retried")

    client = ExecutorClient("http://127.0.0.1", TOKEN, transport=counting, sleep=no_sleep)
    try:
        bad = spec("v")
        bad["base_model"] = "missing-model"
        try:
            await client.submit(AnnealJobSpec.model_validate(bad))
        except ExecutorReplyError as e:
            assert e.status == 422 and e.code == "path_refused" and not e.unreachable
        else:
            raise AssertionError("accepted a missing model")
        await client.submit(AnnealJobSpec.model_validate(spec("v")))
        try:
            await client.submit(AnnealJobSpec.model_validate(spec("v", tokens=5)))
        except ExecutorReplyError as e:
            assert e.status == 409
    finally:
        await client.aclose()
    assert len(counting.seen) == 3
