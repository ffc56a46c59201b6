"""The daemon's HTTP surface in-process (httpx's ASGI transport): auth on every route,
error bodies, idempotent submission, limits. No workers run here (supervisor off)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from executors.daemon import DaemonConfig, TokenFileError, create_app, read_token_file

TOKEN = "t" * 40


def _spec(job_id: str = "job-1", tokens: int = 1000, **extra) -> dict:
    return {
        "job_id": job_id,
        "base_model": "model",
        "source": {"kind": "files", "config": {"paths": ["data/a.jsonl"]}, "tokens": tokens},
        "replay": {"source": {"kind": "files", "config": {"paths": ["data/b.jsonl"]}}},
        **extra,
    }


@pytest.fixture
def app(tmp_path: Path):
    (tmp_path / "model").mkdir()
    cfg = DaemonConfig(
        root=tmp_path,
        state_dir=tmp_path / "state",
        token=TOKEN,
        max_queue=3,
        max_body_bytes=4096,
        allowed_hosts=frozenset({"127.0.0.1", "localhost", "testserver"}),
    )
    return create_app(cfg, start_supervisor=False)


@pytest.fixture
async def client(app):
    asgi, _ = app
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=asgi),
        base_url="http://127.0.0.1",
        headers={"Authorization": f"Bearer {TOKEN}"},
    ) as c:
        yield c


def _concrete(path: str) -> str:
    return path.replace("{job_id}", "job-1")


async def test_every_route_refuses_missing_or_wrong_token(app):
    asgi, fastapi_app = app
    routes = [(r.path, m) for r in fastapi_app.routes for m in getattr(r, "methods", ())]
    assert {"/openapi.json", "/docs", "/v1/health", "/v1/jobs"} <= {p for p, _ in routes}
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=asgi), base_url="http://127.0.0.1", headers=headers
        ) as c:
            for path, method in routes:
                r = await c.request(method, _concrete(path))
                assert r.status_code == 401, (method, path, r.status_code)
                if method == "HEAD":
                    continue
                body = r.json()
                assert body["code"] == "unauthorized" and set(body) == {"code", "field", "message"}
                assert TOKEN not in r.text


async def test_health_reveals_nothing(client):
    r = await client.get("/v1/health")
    assert r.status_code == 200 and r.json() == {"ok": True, "protocol": "1"}


async def test_submit_is_idempotent_and_conflicts_on_a_different_spec(client):
    r1 = await client.post("/v1/jobs", json=_spec())
    assert r1.status_code == 201 and r1.json()["state"] == "queued"
    r2 = await client.post("/v1/jobs", json=_spec())
    assert r2.status_code == 200 and r2.json()["job_id"] == "job-1"
    r3 = await client.post("/v1/jobs", json=_spec(tokens=2000))
    assert r3.status_code == 409 and r3.json()["code"] == "conflict"
    listed = (await client.get("/v1/jobs")).json()
    assert [j["job_id"] for j in listed] == ["job-1"]


async def test_validation_errors_have_code_field_message(client):
    r = await client.post("/v1/jobs", json={**_spec(), "surprise": 1})
    assert r.status_code == 422
    assert r.json()["code"] == "invalid" and r.json()["field"] == "surprise"
    r = await client.post("/v1/jobs", json=_spec(job_id="; rm -rf /"))
    assert r.status_code == 422 and r.json()["field"] == "job_id"
    r = await client.post("/v1/jobs", json={**_spec(), "base_model": "../etc"})
    assert r.status_code == 422 and r.json()["field"] == "base_model"
    r = await client.post("/v1/jobs", json={**_spec(), "base_model": "missing"})
    assert r.status_code == 422 and r.json()["code"] == "path_refused"
    r = await client.get("/v1/jobs/nope")
    assert r.status_code == 404 and r.json()["code"] == "no_such_job"
    r = await client.get("/v1/jobs/nope/log", params={"offset": -1})
    assert r.status_code == 422 and r.json()["field"] == "offset"


async def test_body_and_queue_limits(client):
    big = _spec(labels={f"k{i}": "x" * 200 for i in range(30)})
    r = await client.post("/v1/jobs", json=big)
    assert r.status_code == 413 and r.json()["code"] == "body_too_large"
    for i in range(3):
        assert (await client.post("/v1/jobs", json=_spec(f"q{i}"))).status_code == 201
    r = await client.post("/v1/jobs", json=_spec("q3"))
    assert r.status_code == 429 and int(r.headers["retry-after"]) > 0
    assert r.json()["code"] == "queue_full"


async def test_foreign_host_and_browser_origin_are_refused(client):
    r = await client.get("/v1/health", headers={"Host": "evil.example"})
    assert r.status_code == 403 and r.json()["code"] == "host_refused"
    r = await client.get("/v1/health", headers={"Origin": "http://127.0.0.1"})
    assert r.status_code == 403 and r.json()["code"] == "origin_refused"


async def test_cancel_of_a_queued_job_is_final_and_idempotent(client):
    await client.post("/v1/jobs", json=_spec())
    r1 = await client.delete("/v1/jobs/job-1")
    r2 = await client.delete("/v1/jobs/job-1")
    assert r1.json()["state"] == r2.json()["state"] == "cancelled"
    r = await client.get("/v1/jobs/job-1/result")
    assert r.status_code == 409 and r.json()["code"] == "job_cancelled"
    r = await client.get("/v1/jobs/job-1/log")
    assert r.status_code == 200 and r.json()["final"] is True


def test_token_file_must_be_private(tmp_path: Path):
    f = tmp_path / "token"
    f.write_text(TOKEN)
    os.chmod(f, 0o644)
    with pytest.raises(TokenFileError, match="readable by others"):
        read_token_file(f)
    os.chmod(f, 0o600)
    assert read_token_file(f) == TOKEN
    # The command line refuses to start, with one line on stderr.
    os.chmod(f, 0o640)
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "executors.daemon",
            "serve",
            "--token-file",
            str(f),
            "--root",
            str(tmp_path),
            "--port",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2 and "chmod 600" in out.stderr


def test_non_loopback_bind_needs_the_flag(tmp_path: Path):
    f = tmp_path / "token"
    f.write_text(TOKEN)
    os.chmod(f, 0o600)
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "executors.daemon",
            "serve",
            "--token-file",
            str(f),
            "--root",
            str(tmp_path),
            "--host",
            "0.0.0.0",
            "--port",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2 and "--allow-remote" in out.stderr


def test_jobs_share_the_cores_instead_of_oversubscribing_them(tmp_path: Path):
    from executors.daemon import job_threads

    cores = len(os.sched_getaffinity(0))
    base = {"root": tmp_path, "state_dir": tmp_path / "state", "token": "t" * 32}
    assert job_threads(DaemonConfig(**base)) == cores
    assert job_threads(DaemonConfig(**base, max_jobs=2)) == max(1, cores // 2)
    assert job_threads(DaemonConfig(**base, max_jobs=4 * cores)) == 1
    assert job_threads(DaemonConfig(**base, max_jobs=2, threads_per_job=3)) == 3


async def test_a_mixture_source_the_daemon_cannot_run_is_refused_naming_it(client):
    part = {"name": "a", "kind": "files", "config": {"paths": ["data/a.jsonl"]}, "tokens": 10}
    mixture = [part, {**part, "name": "b", "kind": "filez"}]
    r = await client.post("/v1/jobs", json={**_spec(), "source": None, "mixture": mixture})
    assert r.status_code == 422, r.text
    body = r.json()
    assert (body["code"], body["field"]) == ("unknown_source_kind", "mixture.1.kind")
    assert "did you mean 'files'" in body["message"]
    r = await client.post("/v1/jobs", json={**_spec(), "mixture": [part, {**part, "name": "b"}]})
    assert r.status_code == 422 and "give the domain data once" in r.json()["message"]
