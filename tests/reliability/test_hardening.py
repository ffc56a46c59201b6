"""Holes an adversarial probe found, each closed against the real parts: symlink loops
under the root (real links, the real daemon), root-level globs beside the default state
folder, and failures that are certain refused at submission or failed once."""

from __future__ import annotations

import concurrent.futures
import copy
import json
import os
import selectors
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from executors.daemon import DaemonConfig, create_app
from executors.journal import Journal
from executors.worker import JOURNAL_NAME

from .conftest import HOSTS, TOKEN, spec
from .proc_helpers import job, job_processes, make_root, run_spec, stub_env, wait_for


def _loops(root: Path) -> None:
    """``g/`` holds two links to itself; ``selfloop`` links to itself."""
    (root / "g").mkdir()
    (root / "g" / "x.jsonl").write_text('{"text": "g"}\n')
    (root / "g" / "l1").symlink_to(".")
    (root / "g" / "l2").symlink_to(".")
    (root / "selfloop").symlink_to("selfloop")


def _with_paths(job_id: str, *paths: str) -> dict:
    body = spec(job_id)
    body["source"]["config"]["paths"] = list(paths)
    return body


def test_symlink_loops_are_refused_at_once_and_the_daemon_stays_responsive(root, daemon):
    _loops(root)
    d = daemon()
    post = f"{d.url}/v1/jobs"
    r = httpx.post(post, json=_with_paths("loop", "g/**/x.jsonl"), headers=d.headers, timeout=30)
    assert r.status_code == 422, r.text
    assert r.json()["code"] == "path_refused" and "loop" in r.json()["message"]
    assert r.json()["field"] == "source.config.paths.0"
    r = httpx.post(post, json={**spec("self"), "base_model": "selfloop"}, headers=d.headers)
    assert r.status_code == 422, r.text
    assert r.json()["field"] == "base_model" and "loop" in r.json()["message"]

    # 40 at once (the size of the server's thread pool): all answered, and the daemon
    # answers other requests meanwhile
    def submit(i: int) -> int:
        body = _with_paths(f"loop-{i}", "g/**/x.jsonl", "**/x.jsonl")
        return httpx.post(post, json=body, headers=d.headers, timeout=60).status_code

    with concurrent.futures.ThreadPoolExecutor(40) as pool:
        answers = pool.map(submit, range(40))
        health = httpx.get(f"{d.url}/v1/health", headers=d.headers, timeout=30)
        assert health.status_code == 200
        assert list(answers) == [422] * 40
    assert httpx.get(f"{d.url}/v1/jobs", headers=d.headers).json() == []
    # nothing still walks a loop: SIGTERM is served at once
    t0 = time.monotonic()
    d.stop()
    assert d.proc.returncode is not None and time.monotonic() - t0 < 15


@pytest.fixture
def default_state_app(root: Path):
    """The layout of the local daemon that ``sweep run`` starts: the state folder at its
    default place inside the root."""
    (root / "d1").mkdir()
    (root / "d1" / "a.jsonl").write_text('{"text": "d"}\n')
    cfg = DaemonConfig(
        root=root,
        state_dir=root / ".annealplan" / "executor",
        token=TOKEN,
        allowed_hosts=HOSTS,
    )
    return create_app(cfg, start_supervisor=False)


async def test_root_level_globs_are_served_beside_the_default_state_folder(default_state_app):
    asgi, fastapi_app = default_state_app
    (fastapi_app.state.config.state_dir / "jobs" / "old").mkdir(parents=True)
    (fastapi_app.state.config.state_dir / "jobs" / "old" / "samples.jsonl").write_text("{}\n")
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=asgi),
        base_url="http://127.0.0.1",
        headers={"Authorization": f"Bearer {TOKEN}"},
    ) as c:
        for i, pattern in enumerate(("data/*.jsonl", "**/*.jsonl", "d*/a.jsonl")):
            r = await c.post("/v1/jobs", json=_with_paths(f"ok-{i}", pattern))
            assert r.status_code == 201, (pattern, r.text)
        for i, pattern in enumerate((".annealplan/**", ".annealplan/*/jobs/*/*.jsonl")):
            r = await c.post("/v1/jobs", json=_with_paths(f"no-{i}", pattern))
            assert r.status_code == 422, (pattern, r.text)
            assert "state folder" in r.json()["message"]


async def test_certain_failures_are_refused_at_submission(root: Path, client):
    (root / "weights.bin").write_bytes(b"not a model folder")
    unknown = spec("k")
    unknown["source"]["kind"] = "filez"
    wrong_shape = spec("w")
    wrong_shape["replay"]["source"]["config"]["paths"] = {"a": "data/b.jsonl"}
    unknown_key = copy.deepcopy(spec("u"))
    unknown_key["source"]["config"]["pathz"] = ["data/a.jsonl"]
    cases = [
        ({**spec("f"), "base_model": "weights.bin"}, "path_refused", "base_model", "is a file"),
        (_with_paths("g", "data/*.parquet"), "path_refused", "source.config.paths.0", "nothing"),
        (unknown, "unknown_source_kind", "source.kind", "did you mean 'files'"),
        (wrong_shape, "invalid_source_config", "replay.source.config.paths", "paths"),
        (unknown_key, "invalid_source_config", "source.config.pathz", "pathz"),
    ]
    for body, code, field, says in cases:
        r = await client.post("/v1/jobs", json=body)
        assert r.status_code == 422, (body["job_id"], r.text)
        err = r.json()
        assert (err["code"], err["field"]) == (code, field), err
        assert says in err["message"], err
    assert (await client.get("/v1/jobs")).json() == []


def test_a_model_folder_without_a_tokenizer_fails_once_and_is_not_retried(root, daemon):
    make_root(root)
    (root / "empty-model").mkdir()
    d = daemon()
    r = httpx.post(
        f"{d.url}/v1/jobs", json={**spec("tok"), "base_model": "empty-model"}, headers=d.headers
    )
    assert r.status_code == 201, r.text
    rec = wait_for(lambda: (j := job(d, "tok"))["state"] in ("failed", "succeeded") and j, 120)
    assert rec["state"] == "failed" and rec["error"]["code"] == "tokenizer_unreadable", rec
    assert "base_model" in rec["error"]["message"]
    assert rec["attempts"] == 1
    journal = Journal(d.state / JOURNAL_NAME)
    try:
        assert not [e for e in journal.events("tok") if e[1] in ("retry", "requeued")]
    finally:
        journal.close()
    wait_for(lambda: not job_processes(d.state, "tok"), 15)


def _deep(levels: int) -> str:
    return '{"a": ' * levels + "1" + "}" * levels


def _raw(body: dict, **literals: str) -> str:
    """``body`` as JSON with each ``"@name"`` string replaced by the raw text given."""
    text = json.dumps(body)
    for name, raw in literals.items():
        text = text.replace(f'"@{name}"', raw)
    return text


def _cases() -> list[tuple[str, str, str]]:
    """(what, raw JSON body, the field the answer must name; "" for none)."""
    out = []
    for levels in (33, 256, 900):
        b = spec("deep")
        b["training"] = {"ds_config_extra": {"x": "@deep"}}
        out.append(
            (
                f"ds_config_extra {levels} deep",
                _raw(b, deep=_deep(levels)),
                "training.ds_config_extra",
            )
        )
        b = spec("deep")
        b["source"]["config"]["x"] = "@deep"
        out.append((f"source.config {levels} deep", _raw(b, deep=_deep(levels)), "source.config"))
    b = spec("deeper")
    b["source"]["config"]["x"] = "@deep"
    out.append(("beyond the parser's depth", _raw(b, deep="[" * 5000 + "]" * 5000), ""))
    surrogate = '"a\\ud800b"'
    for where, field in (
        (("source", "config", "text_field"), "source.config"),
        (("replay", "source", "config", "text_field"), "replay.source.config"),
        (("labels", "note"), "labels.note"),
        (("base_model",), "base_model"),
        (("training", "ds_config_extra", "x"), "training.ds_config_extra"),
    ):
        b = copy.deepcopy(spec("sur"))
        cur = b
        for k in where[:-1]:
            cur = cur.setdefault(k, {})
        cur[where[-1]] = "@s"
        out.append((f"lone surrogate in {field}", _raw(b, s=surrogate), field))
    b = spec("sur")
    b["source"]["config"]["@k"] = 1
    out.append(("lone surrogate in a key", _raw(b, k='"\\udfff"'), "source.config"))
    for lit in ("NaN", "-Infinity", "Infinity"):
        b = spec("nan")
        b["training"] = {"ds_config_extra": {"gradient_clipping": "@x"}}
        out.append((f"{lit} in ds_config_extra", _raw(b, x=lit), "training.ds_config_extra"))
        b = spec("nan")
        b["replay"]["fraction"] = "@x"
        out.append((f"{lit} as the replay fraction", _raw(b, x=lit), "replay.fraction"))
    for value in ("true", '"100"', "100.0"):
        b = spec("tok")
        b["source"]["tokens"] = "@x"
        out.append((f"tokens {value}", _raw(b, x=value), "source.tokens"))
    for key, value in (("bf16", 1), ("seq_len", "128"), ("peak_lr", "0.1")):
        b = spec("flag")
        b["training"] = {key: value}
        out.append((f"{key} {value!r}", json.dumps(b), f"training.{key}"))
    return out


async def test_valid_json_that_cannot_be_stored_is_a_422_naming_the_field(client):
    for what, text, field in _cases():
        r = await client.post(
            "/v1/jobs", content=text, headers={"Content-Type": "application/json"}
        )
        assert r.status_code == 422, (what, r.status_code, r.text[:300])
        err = r.json()
        assert err["code"] == "invalid" and err["field"] == (field or None), (what, err)
    assert (await client.get("/v1/jobs")).json() == []
    assert (await client.post("/v1/jobs", json=spec("fine"))).status_code == 201


async def test_the_bearer_scheme_is_case_insensitive(app):
    """RFC 7235: the auth scheme is case-insensitive (and followed by one or more spaces)."""
    asgi, _ = app
    for header in (f"bearer {TOKEN}", f"BEARER {TOKEN}", f"BeArEr  {TOKEN}"):
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=asgi),
            base_url="http://127.0.0.1",
            headers={"Authorization": header},
        ) as c:
            assert (await c.get("/v1/health")).status_code == 200, header
            assert (await c.post("/v1/jobs", json=spec("case"))).status_code in (200, 201)


# -- connections: idle, half-sent, beyond the limit ------------------------------------


def _wait_closed(socks: list[socket.socket], timeout: float) -> dict[socket.socket, bytes]:
    """What each socket received until the server closed it; fails if one stays open."""
    got = {s: b"" for s in socks}
    sel = selectors.DefaultSelector()
    for s in socks:
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    while sel.get_map() and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=0.5):
            s = key.fileobj
            try:
                data = s.recv(65536)
            except ConnectionResetError:
                data = b""
            got[s] += data
            if not data:
                sel.unregister(s)
    still_open = len(sel.get_map())
    sel.close()
    assert still_open == 0, f"{still_open} connections still open after {timeout} s"
    return got


def test_idle_and_half_sent_connections_are_closed(root, daemon):
    d = daemon("--header-timeout", "2", "--body-timeout", "2", "--max-connections", "400")
    addr = ("127.0.0.1", d.port)
    auth = f"Authorization: Bearer {TOKEN}\r\n"
    idle = [socket.create_connection(addr) for _ in range(150)]
    half_headers = []
    for _ in range(150):
        s = socket.create_connection(addr)
        s.sendall(b"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthoriz")
        half_headers.append(s)
    half_body = []
    for _ in range(5):
        s = socket.create_connection(addr)
        head = f"POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Content-Length: 1000\r\n"
        s.sendall(head.encode() + b"Content-Type: application/json\r\n\r\n" + b'{"job_id": ')
        half_body.append(s)
    # a request answered, then a next one dribbled in a byte at a time, never finished
    slow = socket.create_connection(addr)
    slow.sendall(f"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}\r\n".encode())
    assert slow.recv(65536).startswith(b"HTTP/1.1 200")
    for _ in range(3):
        slow.sendall(b"G")
        time.sleep(0.5)
    got = _wait_closed([*idle, *half_headers, *half_body, slow], timeout=30)
    assert all(got[s] == b"" for s in (*idle, *half_headers))
    assert all(got[s].startswith(b"HTTP/1.1 408") for s in half_body), got[half_body[0]]
    assert b"body_timeout" in got[half_body[0]]
    for s in got:
        s.close()
    assert httpx.get(f"{d.url}/v1/health", headers=d.headers, timeout=10).status_code == 200


def test_connections_beyond_the_limit_get_503_until_idle_ones_are_closed(root, daemon):
    d = daemon("--max-connections", "4", "--header-timeout", "2")
    idle = [socket.create_connection(("127.0.0.1", d.port)) for _ in range(4)]
    time.sleep(0.5)
    r = httpx.get(f"{d.url}/v1/health", headers=d.headers, timeout=10)
    assert r.status_code == 503
    _wait_closed(idle, timeout=15)
    assert httpx.get(f"{d.url}/v1/health", headers=d.headers, timeout=10).status_code == 200
    for s in idle:
        s.close()


def test_an_unfinished_header_block_is_not_buffered_past_its_cap(root, daemon):
    d = daemon("--header-timeout", "60")
    s = socket.create_connection(("127.0.0.1", d.port))
    s.sendall(b"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: " + b"x" * 40_000)
    got = _wait_closed([s], timeout=15)  # answered and closed long before the header timeout
    assert got[s].startswith(b"HTTP/1.1 400"), got[s][:100]
    s.close()
    assert httpx.get(f"{d.url}/v1/health", headers=d.headers, timeout=10).status_code == 200


# -- --allow-remote: a warning, and TLS or an explicit --insecure ----------------------


def _serve(tmp: Path, root: Path, token_file: Path, *args: str) -> tuple[subprocess.Popen, int]:
    """``annealplan-executor serve`` as a user types it; its port once it listens."""
    port_file = tmp / "port.json"
    port_file.unlink(missing_ok=True)
    exe = Path(sys.executable).with_name("annealplan-executor")
    cmd = [str(exe), "serve", "--port", "0", "--port-file", str(port_file), "--root", str(root)]
    cmd += ["--token-file", str(token_file), "--state", str(tmp / "state"), *args]
    err = (tmp / "serve.stderr").open("wb")
    proc = subprocess.Popen(cmd, stdout=err, stderr=err, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not port_file.is_file():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError((tmp / "serve.stderr").read_text())
        time.sleep(0.05)
    return proc, json.loads(port_file.read_text())["port"]


def _stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=40)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def _refused(root: Path, token_file: Path, *args: str) -> str:
    exe = Path(sys.executable).with_name("annealplan-executor")
    cmd = [str(exe), "serve", "--port", "0", "--root", str(root), "--token-file", str(token_file)]
    out = subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2, (args, out.returncode, out.stderr)
    return out.stderr


def test_allow_remote_needs_tls_or_insecure_and_says_what_it_exposes(tmp_path, root, token_file):
    import trustme

    says = _refused(root, token_file, "--allow-remote")
    assert "--tls-cert" in says and "--insecure" in says and "clear text" in says
    assert "both --tls-cert and --tls-key" in _refused(
        root, token_file, "--tls-cert", str(token_file)
    )
    assert "only goes with --allow-remote" in _refused(root, token_file, "--insecure")
    assert "cannot load the TLS certificate" in _refused(
        root, token_file, "--allow-remote", "--tls-cert", str(token_file), "--tls-key",
        str(token_file),
    )  # fmt: skip

    # --insecure: plain HTTP, any Host, and a warning naming what is exposed
    proc, port = _serve(tmp_path, root, token_file, "--allow-remote", "--insecure")
    try:
        headers = {"Authorization": f"Bearer {TOKEN}", "Host": "gpu-box.example"}
        r = httpx.get(f"http://127.0.0.1:{port}/v1/health", headers=headers, timeout=10)
        assert r.status_code == 200
    finally:
        _stop(proc)
    warning = (tmp_path / "serve.stderr").read_text()
    assert "warning: --allow-remote" in warning and "any host name" in warning
    assert "submit jobs" in warning and str(root) in warning and "clear text" in warning

    # TLS: a certificate from a test CA
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    os.chmod(tmp_path / "key.pem", 0o600)
    tls = ("--tls-cert", str(tmp_path / "cert.pem"), "--tls-key", str(tmp_path / "key.pem"))
    proc, port = _serve(tmp_path, root, token_file, "--allow-remote", *tls)
    try:
        ctx = ssl.create_default_context()
        ca.configure_trust(ctx)
        with httpx.Client(verify=ctx, headers={"Authorization": f"Bearer {TOKEN}"}) as c:
            assert c.get(f"https://127.0.0.1:{port}/v1/health", timeout=10).status_code == 200
            assert c.post(f"https://127.0.0.1:{port}/v1/jobs", json=spec("tls")).status_code == 201
        with pytest.raises(httpx.TransportError):  # the plain-HTTP port is gone
            httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=10).raise_for_status()
    finally:
        _stop(proc)
    warning = (tmp_path / "serve.stderr").read_text()  # this run's alone
    assert "warning: --allow-remote: https://" in warning and "clear text" not in warning


async def test_the_daemons_connections_have_tcp_nodelay():
    """asyncio (which uvicorn serves on) sets TCP_NODELAY on an accepted connection only
    when the listening socket says it is TCP; without it every response on a kept-alive
    connection waited ~40 ms for a delayed ACK (``bench/keepalive.py`` measures it)."""
    import asyncio

    from executors.daemon.server import bind

    sock = bind("127.0.0.1", 0)
    accepted: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    class Probe(asyncio.Protocol):
        def connection_made(self, transport):
            s = transport.get_extra_info("socket")
            accepted.set_result(s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            transport.close()

    server = await asyncio.get_running_loop().create_server(Probe, sock=sock)
    try:
        _, writer = await asyncio.open_connection(*sock.getsockname()[:2])
        assert await asyncio.wait_for(accepted, 10) != 0
        writer.close()
    finally:
        server.close()
        await server.wait_closed()


def test_a_result_counts_the_training_time_of_every_attempt(root, daemon):
    """A trainer killed mid-run is retried and resumes from its checkpoint; the result's
    ``train_seconds`` is the last attempt's, ``train_seconds_total`` every attempt's."""
    make_root(root)
    d = daemon(**stub_env(STUB_STEP_S="0.05"))
    r = httpx.post(f"{d.url}/v1/jobs", json=run_spec("twice", steps=60), headers=d.headers)
    assert r.status_code == 201, r.text
    wait_for(lambda: job(d, "twice")["progress"]["step"] >= 30, 120)
    trainers = [
        p for p in job_processes(d.state, "twice") if "stub_trainer" in " ".join(p.cmdline())
    ]
    assert len(trainers) == 1
    trainers[0].kill()
    rec = wait_for(lambda: (j := job(d, "twice"))["state"] in ("succeeded", "failed") and j, 180)
    assert rec["state"] == "succeeded" and rec["attempts"] == 2, rec
    res = httpx.get(f"{d.url}/v1/jobs/twice/result", headers=d.headers).json()
    first = res["train_seconds_total"] - res["train_seconds"]
    # the killed attempt trained 30 steps of 0.05 s (its last second may be lost)
    assert first >= 30 * 0.05 - 1.0, res
    assert len(list((d.state / "jobs" / "twice" / "train_seconds").iterdir())) == 2
