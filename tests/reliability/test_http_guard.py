"""T11–T15 and T9 on the daemon's app in-process: the same FastAPI app behind the same guard
middleware the server runs, driven through httpx's ASGI transport (no workers start)."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import httpx
import pytest

from executors.daemon import TokenFileError, read_token_file
from executors.worker import job_dir

from .conftest import TOKEN, spec

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD")


def _routes(fastapi_app) -> list[str]:
    return sorted({r.path.replace("{job_id}", "job-1") for r in fastapi_app.routes})


def _error_body(r: httpx.Response) -> dict:
    body = r.json()
    assert set(body) == {"code", "field", "message"}, body
    return body


async def test_t11_every_route_and_method_needs_the_token(app):
    asgi, fastapi_app = app
    paths = [*_routes(fastapi_app), "/v1/nope", "/", "/docs/oauth2-redirect"]
    assert {"/openapi.json", "/docs", "/redoc", "/v1/health", "/v1/jobs"} <= set(paths)
    bad = (
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": TOKEN},
        {"Authorization": f"Bearer {TOKEN} "},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": f"Bearer {TOKEN[:-1]}"},
        {"Authorization": f"Bearer{TOKEN}"},
        {"Authorization": f"Bearerx {TOKEN}"},
        {"Authorization": "Bearer"},
        {"Authorization": f"{TOKEN} Bearer"},
    )
    for headers in bad:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=asgi), base_url="http://127.0.0.1", headers=headers
        ) as c:
            for path in paths:
                for method in METHODS:
                    r = await c.request(method, path, json=spec() if method == "POST" else None)
                    assert r.status_code == 401, (headers, method, path, r.status_code)
                    if method != "HEAD":
                        assert _error_body(r)["code"] == "unauthorized"
                        assert TOKEN not in r.text


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o602])
def test_t11_token_file_readable_by_others_is_refused(tmp_path: Path, mode: int):
    f = tmp_path / "token"
    f.write_text(TOKEN)
    os.chmod(f, mode)
    with pytest.raises(TokenFileError):
        read_token_file(f)


def test_t11_token_file_symlink_to_a_public_file_is_refused(tmp_path: Path):
    target = tmp_path / "public"
    target.write_text(TOKEN)
    os.chmod(target, 0o644)
    link = tmp_path / "token"
    link.symlink_to(target)
    with pytest.raises(TokenFileError):
        read_token_file(link)


FOREIGN_HOSTS = [
    "evil.example",
    "evil.example:8765",
    "127.0.0.1.evil.example",
    "localhost.evil.example:80",
    "127.0.0.2",
    "0.0.0.0",
    "",
    "LOCALHOST.evil",
]


async def test_t12_foreign_host_refused_on_every_method(app, client):
    _, fastapi_app = app
    for path in _routes(fastapi_app):
        for method in METHODS:
            for host in FOREIGN_HOSTS:
                r = await client.request(method, path, headers={"Host": host})
                assert r.status_code == 403, (method, path, host, r.status_code)
                if method != "HEAD":
                    assert _error_body(r)["code"] == "host_refused"


async def test_t12_browser_origin_refused_on_every_method(app, client):
    _, fastapi_app = app
    for path in _routes(fastapi_app):
        for method in METHODS:
            for origin in ("http://127.0.0.1:8765", "null", "https://evil.example", ""):
                r = await client.request(method, path, headers={"Origin": origin})
                assert r.status_code == 403, (method, path, origin, r.status_code)
                if method != "HEAD":
                    assert _error_body(r)["code"] == "origin_refused"
    # Loopback names with a port are served.
    for host in ("127.0.0.1:8765", "localhost:1", "LOCALHOST"):
        assert (await client.get("/v1/health", headers={"Host": host})).status_code == 200


# -- T14 path traversal -----------------------------------------------------------------

TRAVERSALS = [
    "..",
    "../etc/passwd",
    "model/../../etc",
    "model/..",
    "%2e%2e/etc",
    "%2E%2E%2Fetc",
    "..%2f..%2fetc",
    "/etc/passwd",
    "//etc/passwd",
    "/proc/self/root/etc/passwd",
    "proc/self/root/../../etc",
    "model\x00/etc",
    "model\\..\\..\\etc",
    "~/.ssh/id_rsa",
    "~root",
    "out/etc/passwd",  # a symlink out of the root
    "out",
    "ou[t]/etc/passwd",  # a glob that only matches through the symlink
    "*/etc/passwd",
    "**/passwd",
    "state/journal.sqlite3",  # the daemon's own state (a sibling here, but through a link)
]


def _path_fields(value: str) -> dict[str, dict]:
    """Every path field of a job spec set to ``value`` (one spec per field)."""
    out = {}
    s = spec()
    out["base_model"] = {**s, "base_model": value}
    out["tokenizer"] = {**s, "tokenizer": value}
    out["evaluation.task_dirs.0"] = {**s, "evaluation": {"task_dirs": [value]}}
    for key in ("paths",):
        t = copy.deepcopy(s)
        t["source"]["config"][key] = [value]
        out[f"source.config.{key}.0"] = t
        t = copy.deepcopy(s)
        t["replay"]["source"]["config"][key] = [value]
        out[f"replay.source.config.{key}.0"] = t
    # Path fields of the other built-in kinds, named as each kind declares them.
    for kind, key in (
        ("hf-disk", "path"),
        ("filtered", "pool"),
        ("filtered", "classifier"),
        ("filtered", "labelled"),
        ("synthetic", "generator"),
        ("synthetic", "seeds"),
        ("synthetic", "cache_dir"),
    ):
        t = copy.deepcopy(s)
        t["source"] = {"kind": kind, "config": {key: value}, "tokens": 1000}
        out[f"source.config.{key}"] = t
    return out


async def test_t14_path_traversal_in_every_path_field_is_refused(root: Path, client):
    (root / "out").symlink_to("/")
    (root / "state").symlink_to(root.parent / "state")
    for value in TRAVERSALS:
        for where, body in _path_fields(value).items():
            r = await client.post("/v1/jobs", json={**body, "job_id": "t14"})
            assert 400 <= r.status_code < 500, (where, value, r.status_code, r.text)
            assert r.status_code != 404
            err = _error_body(r)
            assert err["field"] and err["field"].split(".")[0] == where.split(".")[0], (
                where,
                value,
                err,
            )
    assert (await client.get("/v1/jobs")).json() == []


async def test_t14_path_in_url_segments_never_reads_files(client):
    for path in (
        "/v1/jobs/..%2f..%2fetc%2fpasswd/log",
        "/v1/jobs/%2e%2e/log",
        "/v1/jobs/../../etc/passwd",
        "/v1/jobs/..%00/log",
        "/v1/jobs/%2fetc%2fpasswd/log",
    ):
        r = await client.get(path)
        assert 400 <= r.status_code < 500, (path, r.status_code)
        assert "root:" not in r.text


# -- T13 shell metacharacters -----------------------------------------------------------

META = [
    "$(touch {canary})",
    "`touch {canary}`",
    "; touch {canary}",
    "| touch {canary}",
    "&& touch {canary}",
    "\ntouch {canary}",
    "--output={canary}",
    "-rf",
    "--help",
    "'; touch {canary}; '",
]


def _string_fields(value: str) -> dict[str, tuple[dict, bool]]:
    """Each string field set to ``value``: (spec, may be accepted as a literal)."""
    s = spec()
    out: dict[str, tuple[dict, bool]] = {}
    out["job_id"] = ({**s, "job_id": value}, False)
    out["base_model"] = ({**s, "base_model": value}, False)
    out["tokenizer"] = ({**s, "tokenizer": value}, False)
    t = copy.deepcopy(s)
    t["source"]["kind"] = value
    out["source.kind"] = (t, False)
    t = copy.deepcopy(s)
    t["source"]["config"]["paths"] = [value]
    out["source.config.paths"] = (t, True)  # a literal file name, given to glob()
    t = copy.deepcopy(s)
    t["source"]["config"]["text_field"] = value
    out["source.config.text_field"] = (t, True)  # the plugin reads it as a JSON key
    out["evaluation.tasks"] = ({**s, "evaluation": {"tasks": [value]}}, False)
    out["evaluation.task_dirs"] = ({**s, "evaluation": {"task_dirs": [value]}}, False)
    out["labels.value"] = ({**s, "labels": {"note": value}}, True)
    out["labels.key"] = ({**s, "labels": {value: "x"}}, False)
    out["ds_config_extra"] = ({**s, "training": {"ds_config_extra": {"x": value}}}, True)
    return out


async def test_t13_metacharacters_are_refused_or_kept_literal(tmp_path: Path, client):
    canary = tmp_path / "CANARY"
    n = 0
    for template in META:
        value = template.format(canary=canary)
        for where, (body, literal_ok) in _string_fields(value).items():
            n += 1
            body = {**body, "job_id": body["job_id"] if where == "job_id" else f"m{n}"}
            r = await client.post("/v1/jobs", json=body)
            if r.status_code in (200, 201):
                assert literal_ok, (where, value)
                # Accepted: stored byte for byte, as data, never as a command.
                got = (await client.get(f"/v1/jobs/{body['job_id']}")).json()
                if where == "labels.value":
                    assert got["labels"]["note"] == value
            else:
                assert 400 <= r.status_code < 500, (where, value, r.status_code)
                _error_body(r)
    assert not canary.exists()


# -- T15 limits -----------------------------------------------------------------------------


async def test_t15_body_limit_413_even_when_chunked_or_lying(client):
    big = spec(labels={f"k{i}": "x" * 250 for i in range(32)})
    big["training"] = {"ds_config_extra": {"pad": "y" * 70_000}}
    r = await client.post("/v1/jobs", json=big)
    assert r.status_code == 413 and _error_body(r)["code"] == "body_too_large"

    async def chunks():
        for _ in range(100):
            yield b"x" * 1024

    r = await client.post(
        "/v1/jobs", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 413
    r = await client.post(
        "/v1/jobs", content=b"{}", headers={"Content-Length": "999999999999999999999"}
    )
    assert r.status_code in (400, 413)
    for bad in ("abc", "-1", "1e3"):
        r = await client.post("/v1/jobs", content=b"{}", headers={"Content-Length": bad})
        assert 400 <= r.status_code < 500, bad


async def test_t15_queue_full_is_429_with_retry_after(root: Path):
    from executors.daemon import DaemonConfig, create_app

    from .conftest import HOSTS

    cfg = DaemonConfig(
        root=root, state_dir=root.parent / "s2", token=TOKEN, max_queue=2, allowed_hosts=HOSTS
    )
    asgi, _ = create_app(cfg, start_supervisor=False)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=asgi),
        base_url="http://127.0.0.1",
        headers={"Authorization": f"Bearer {TOKEN}"},
    ) as c:
        assert (await c.post("/v1/jobs", json=spec("a"))).status_code == 201
        assert (await c.post("/v1/jobs", json=spec("b"))).status_code == 201
        r = await c.post("/v1/jobs", json=spec("c"))
        assert r.status_code == 429 and float(r.headers["Retry-After"]) > 0
        assert _error_body(r)["code"] == "queue_full"
        # A resubmission of a job already queued is not new work: still answered.
        assert (await c.post("/v1/jobs", json=spec("a"))).status_code == 200
        await c.delete("/v1/jobs/a")
        assert (await c.post("/v1/jobs", json=spec("c"))).status_code == 201


# -- T9 logs ------------------------------------------------------------------------------


async def test_t9_a_log_that_is_gone_answers_410_json(app, client):
    _, fastapi_app = app
    journal = fastapi_app.state.journal
    cfg = fastapi_app.state.config
    assert (await client.post("/v1/jobs", json=spec("gone"))).status_code == 201
    token = journal.claim("gone")  # it ran once…
    assert token
    folder = job_dir(cfg.state_dir, "gone")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "log.txt").write_text("hello\n")
    r = await client.get("/v1/jobs/gone/log")
    assert r.status_code == 200 and r.json()["text"] == "hello\n"
    (folder / "log.txt").unlink()  # …and its log was removed
    r = await client.get("/v1/jobs/gone/log")
    assert r.status_code == 410 and _error_body(r)["code"] == "log_gone"
    # The log is a folder, or unreadable: still a 4xx with a body, never a 500.
    (folder / "log.txt").mkdir()
    r = await client.get("/v1/jobs/gone/log")
    assert r.status_code == 410, r.status_code
    (folder / "log.txt").rmdir()
    import shutil

    shutil.rmtree(cfg.state_dir / "jobs")
    r = await client.get("/v1/jobs/gone/log", params={"offset": 10**6})
    assert r.status_code == 410


async def test_t14_the_daemons_own_state_under_the_root_is_refused(root: Path):
    from executors.daemon import DaemonConfig, create_app

    from .conftest import HOSTS

    state = root / ".annealplan" / "executor"  # the default place: inside the root
    cfg = DaemonConfig(root=root, state_dir=state, token=TOKEN, allowed_hosts=HOSTS)
    asgi, _ = create_app(cfg, start_supervisor=False)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=asgi),
        base_url="http://127.0.0.1",
        headers={"Authorization": f"Bearer {TOKEN}"},
    ) as c:
        for value in (
            ".annealplan/executor",
            ".annealplan/executor/journal.sqlite3",
            ".annealplan",
        ):
            for where, body in _path_fields(value).items():
                r = await c.post("/v1/jobs", json={**body, "job_id": "own"})
                assert 400 <= r.status_code < 500, (where, value, r.status_code)
        assert (await c.get("/v1/jobs")).json() == []
