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


# -- the adversarial set, against the real daemon ---------------------------------------

#: raw JSON texts that valid-looking specs were once answered with a 500 (or a hang) for
_DEEP = [30, 33, 256, 600, 990, 5000]
_RAW_VALUES = [
    *('{"a": ' * n + "1" + "}" * n for n in _DEEP),
    *("[" * n + "]" * n for n in _DEEP),
    '"\\ud800"',
    '"a\\udfffb"',
    '{"\\ud800": 1}',
    '["ok", "\\udc80"]',
    "NaN",
    "-Infinity",
    "Infinity",
    "true",
    '"100"',
    "100.0",
    "1e400",
    "-1",
    "null",
    "{}",
    "[]",
    '{"a": "data/a.jsonl"}',
]
_PATHS = [
    "g/**/x.jsonl",
    "**/x.jsonl",
    "g/l1/l2/l1/x.jsonl",
    "selfloop",
    "selfloop/x",
    "sel*",
    "**",
    "*",
    ".annealplan/**",
    "data/*.parquet",
    "data/*.jsonl",
    "model",
    "data/a.jsonl",
    "../x",
    "a\\ud800",
]
_WHERE = [
    ("source", "config", "paths"),
    ("source", "config", "paths", 0),
    ("source", "config", "text_field"),
    ("source", "config", "x"),
    ("source", "tokens"),
    ("source", "kind"),
    ("replay", "source", "config"),
    ("replay", "fraction"),
    ("training", "ds_config_extra"),
    ("training", "ds_config_extra", "gradient_clipping"),
    ("training", "seq_len"),
    ("training", "bf16"),
    ("evaluation", "task_dirs", 0),
    ("evaluation", "tasks", 0),
    ("labels", "note"),
    ("base_model",),
    ("tokenizer",),
    ("job_id",),
]


def _raw_body(job_id: str, edits: list[tuple[tuple, str]]) -> str:
    """The valid spec with each (path, raw JSON text) put in place, as JSON text."""
    body = spec(job_id)
    raws: dict[str, str] = {}
    for i, (where, raw) in enumerate(edits):
        cur: object = body
        for k in where[:-1]:
            nxt = cur[k] if isinstance(cur, dict) and isinstance(cur.get(k), dict | list) else None
            if isinstance(cur, list):
                nxt = cur[k] if isinstance(k, int) and k < len(cur) else None
            if nxt is None:
                nxt = [] if isinstance(where[where.index(k) + 1], int) else {}
                if isinstance(cur, dict):
                    cur[k] = nxt
                else:
                    break
            cur = nxt
        slot = f"@@{i}@@"
        last = where[-1]
        if isinstance(cur, dict):
            cur[last] = slot
        elif isinstance(cur, list):
            if isinstance(last, int) and last < len(cur):
                cur[last] = slot
            else:
                cur.append(slot)
        raws[f'"{slot}"'] = raw
    text = json.dumps(body)
    for slot, raw in raws.items():
        text = text.replace(slot, raw)
    return text


@pytest.fixture
def adversarial_root(root):
    """The probe's root: links to itself under g/, a link to itself, a file for a model."""
    (root / "g").mkdir()
    (root / "g" / "x.jsonl").write_text('{"text": "g"}\n')
    (root / "g" / "l1").symlink_to(".")
    (root / "g" / "l2").symlink_to(".")
    (root / "selfloop").symlink_to("selfloop")
    (root / "weights.bin").write_bytes(b"x")
    return root


def test_t10_adversarial_requests_on_every_route_of_the_real_daemon(adversarial_root, daemon):
    """Deep nesting, lone surrogates, NaN, coerced types, symlink loops and globs in job
    specs, odd ids and queries on every route: ``CASES`` × 4 requests on one kept-alive
    connection (and one request on a new one every 50), each answered within 30 s, none
    with a 5xx, and the daemon still up."""
    # a short queue: the few specs that pass make 429s, not a line of workers
    d = daemon("--max-queue", "3")
    seen = {"requests": 0, "5xx": 0}
    routes = ["/v1/jobs/{}", "/v1/jobs/{}/log", "/v1/jobs/{}/result", "/v1/{}", "/{}"]
    ids = st.sampled_from(["x", "fz", "a%ED%A0%80", "%F0%9F%98%80", "%00", "..%2F..", "A" * 300])
    with httpx.Client(base_url=d.url, headers=d.headers, timeout=30) as c:

        def call(method: str, url: str, **kw) -> None:
            seen["requests"] += 1
            if seen["requests"] % 50 == 0:
                r = httpx.request(method, d.url + url, headers=d.headers, timeout=30, **kw)
            else:
                r = c.request(method, url, **kw)
            seen["5xx"] += r.status_code >= 500
            _check(r.status_code, r.text if method != "HEAD" else "", (method, url, kw))

        @_SETTINGS
        @given(
            st.lists(
                st.tuples(
                    st.sampled_from(_WHERE),
                    st.sampled_from(_RAW_VALUES) | st.sampled_from(_PATHS).map(json.dumps),
                ),
                min_size=1,
                max_size=3,
            ),
            st.sampled_from(routes),
            ids,
            st.dictionaries(
                st.sampled_from(["offset", "limit", "state"]),
                # values as sent on the wire: %ED%A0%80 is a surrogate's bytes (invalid UTF-8)
                st.sampled_from(["-1", "0", "1e3", "9" * 30, "queued", "%ED%A0%80", "NaN", ""]),
                max_size=2,
            ),
            st.sampled_from(["GET", "DELETE", "POST", "PUT", "OPTIONS", "HEAD"]),
        )
        def run(edits, route, job_id, params, method):
            text = _raw_body("fz", edits)
            call("POST", "/v1/jobs", content=text, headers={"Content-Type": "application/json"})
            query = "&".join(f"{k}={v}" for k, v in params.items())
            call(method, route.format(job_id) + (f"?{query}" if query else ""))
            call("GET", "/v1/jobs", params={"state": params.get("state", "queued")})
            call("GET", "/v1/health")

        run()
    assert seen["5xx"] == 0
    assert seen["requests"] >= 4 * CASES
    assert d.proc.poll() is None, "the daemon died"
    assert httpx.get(f"{d.url}/v1/health", headers=d.headers, timeout=10).status_code == 200
    for job in httpx.get(f"{d.url}/v1/jobs", headers=d.headers).json():
        httpx.delete(f"{d.url}/v1/jobs/{job['job_id']}", headers=d.headers)
    print(f"adversarial fuzz: {seen['requests']} requests, {seen['5xx']} answered 5xx")
