"""T10: generated malformed requests — schemathesis from the daemon's own OpenAPI against the
real server, and hypothesis in-process — every one gets a 4xx ``{code, field, message}``
(or a 2xx), never a 5xx, and the daemon stays up.

Cases: ``ANNEALPLAN_RELIABILITY_FUZZ`` per generator (CI default 300)."""

from __future__ import annotations

import contextlib
import json

import httpx
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable

from .conftest import TOKEN, env_int, spec

CASES = env_int("ANNEALPLAN_RELIABILITY_FUZZ", 300)
_SETTINGS = settings(
    max_examples=CASES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)


def _check(status: int, text: str, what: object) -> None:
    assert status < 500, (what, status, text[:300])
    if status >= 400 and text:
        body = json.loads(text)
        assert set(body) == {"code", "field", "message"}, (what, body)
        assert isinstance(body["code"], str) and isinstance(body["message"], str)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=40),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
_KEYS = [
    ("job_id",),
    ("base_model",),
    ("tokenizer",),
    ("source",),
    ("source", "kind"),
    ("source", "tokens"),
    ("source", "config"),
    ("source", "config", "paths"),
    ("replay",),
    ("replay", "fraction"),
    ("replay", "source", "config", "paths"),
    ("training",),
    ("training", "seq_len"),
    ("training", "ds_config_extra"),
    ("training", "checkpoint_every_steps"),
    ("evaluation",),
    ("evaluation", "tasks"),
    ("evaluation", "task_dirs"),
    ("labels",),
    ("kind",),
    ("surprise",),
]


def _mutate(body: dict, path: tuple[str, ...], value: object) -> dict:
    out = json.loads(json.dumps(body))
    cur = out
    for k in path[:-1]:
        nxt = cur.get(k)
        if not isinstance(nxt, dict):
            nxt = {}
            cur[k] = nxt
        cur = nxt
    cur[path[-1]] = value
    return out


@pytest.fixture(scope="module")
def fuzz_app(tmp_path_factory):
    from executors.daemon import DaemonConfig, create_app

    from .conftest import HOSTS

    root = tmp_path_factory.mktemp("fuzzroot")
    (root / "model").mkdir()
    (root / "data").mkdir()
    cfg = DaemonConfig(
        root=root,
        state_dir=root / ".annealplan" / "executor",
        token=TOKEN,
        max_queue=100_000,
        max_body_bytes=64 * 1024,
        allowed_hosts=HOSTS,
    )
    asgi, _ = create_app(cfg, start_supervisor=False)
    with TestClient(
        asgi,
        base_url="http://127.0.0.1",
        headers={"Authorization": f"Bearer {TOKEN}"},
        raise_server_exceptions=True,
    ) as c:
        yield c


def test_t10_hypothesis_malformed_submissions(fuzz_app):
    @_SETTINGS
    @given(
        st.lists(st.tuples(st.sampled_from(_KEYS), json_values), min_size=1, max_size=4),
        st.booleans(),
    )
    def run(mutations, raw):
        body = spec("fz")
        for path, value in mutations:
            body = _mutate(body, path, value)
        # json.dumps writes NaN/Infinity literals, which lenient parsers accept: sent raw.
        text = json.dumps(body)
        r = fuzz_app.post(
            "/v1/jobs",
            content=text[: len(text) // 2] if raw else text,
            headers={"Content-Type": "application/json"},
        )
        _check(r.status_code, r.text, body)

    run()


def test_t10_hypothesis_malformed_urls_and_headers(fuzz_app):
    segment = st.text(
        st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=0, max_size=30
    )

    @_SETTINGS
    @given(
        st.sampled_from(["GET", "POST", "DELETE", "PUT", "PATCH", "OPTIONS"]),
        st.sampled_from(["/v1/jobs/{}", "/v1/jobs/{}/log", "/v1/jobs/{}/result", "/v1/{}", "/{}"]),
        segment,
        st.dictionaries(st.sampled_from(["offset", "limit", "state", "x"]), segment, max_size=3),
        st.binary(max_size=200),
        st.sampled_from(
            ["application/json", "text/plain", "application/x-www-form-urlencoded", ""]
        ),
    )
    def run(method, template, seg, params, content, ctype):
        from urllib.parse import quote

        url = template.format(quote(seg, safe=""))
        r = fuzz_app.request(
            method, url, params=params, content=content, headers={"Content-Type": ctype}
        )
        _check(r.status_code, r.text if method != "HEAD" else "", (method, url, params))

    run()


def test_t10_schemathesis_from_the_daemons_openapi(daemon):
    import schemathesis
    from schemathesis import GenerationMode

    d = daemon()
    raw = httpx.get(f"{d.url}/openapi.json", headers=d.headers, timeout=10).json()
    schema = schemathesis.openapi.from_dict(raw)
    seen = 0
    for result in schema.get_all_operations():
        op = result.ok()
        for mode in (GenerationMode.NEGATIVE, GenerationMode.POSITIVE):
            per_op = max(10, CASES // 6) if mode is GenerationMode.POSITIVE else CASES // 3

            @settings(
                max_examples=per_op,
                deadline=None,
                derandomize=True,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            @given(case=op.as_strategy(generation_mode=mode))
            def run(case):
                nonlocal seen
                seen += 1
                r = case.call(base_url=d.url, headers={**d.headers}, timeout=30)
                _check(r.status_code, r.text if case.method.upper() != "HEAD" else "", case)

            # Nothing negative can be said about an operation without inputs.
            with contextlib.suppress(Unsatisfiable):
                run()
    assert seen >= CASES
    assert d.proc.poll() is None, "the daemon died"
    assert httpx.get(f"{d.url}/v1/health", headers=d.headers).status_code == 200
    # Cancel whatever a positive case managed to submit, so no worker runs on.
    for job in httpx.get(f"{d.url}/v1/jobs", headers=d.headers).json():
        httpx.delete(f"{d.url}/v1/jobs/{job['job_id']}", headers=d.headers)
