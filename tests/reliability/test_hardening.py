"""Holes an adversarial probe found, each closed against the real parts: symlink loops
under the root (real links, the real daemon), root-level globs beside the default state
folder, and failures that are certain refused at submission or failed once."""

from __future__ import annotations

import concurrent.futures
import copy
import json
import time
from pathlib import Path

import httpx
import pytest

from executors.daemon import DaemonConfig, create_app
from executors.journal import Journal
from executors.worker import JOURNAL_NAME

from .conftest import HOSTS, TOKEN, spec
from .proc_helpers import job, job_processes, make_root, wait_for


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
