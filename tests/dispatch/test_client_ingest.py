"""The dispatcher without a daemon: client retries and error mapping (faults injected with
httpx's mock transport), spec translation, result ingestion, the executors registry, the
built-in backends and the ``executors`` CLI."""

from __future__ import annotations

import json
import os
import random
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from executors.protocol import AnnealJobSpec, JobResult
from planner.cli import cli
from planner.dispatch.client import ExecutorClient, ExecutorReplyError
from planner.dispatch.ingest import build_job, result_to_run
from planner.dispatch.registry import add_executor, load_executors
from planner.domain import AnnealSpec, Source
from planner.errors import ConfigError

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


def _lookup(name: str) -> Source:
    return {"domain": Source("domain", "files", {"paths": ["data/d.jsonl"]})}[name]


META = {
    "base_model": "model",
    "replay": {"kind": "files", "config": {"paths": ["data/g.jsonl"]}},
    "training": {"seq_len": 64, "micro_batch": 2},
    "evaluation": {"tasks": ["tiny_mc"], "task_dirs": ["tasks"]},
    "compute_unit": "usd",
    "rates": {"flops_per_gpu_hour": 1e15, "usd_per_gpu_hour": 2.0},
}


def test_build_job_for_a_source_and_a_control():
    job = build_job(AnnealSpec("j-src", "e", "domain", 3000.0, 0.7, 3), META, _lookup)
    assert job.source.kind == "files" and job.source.tokens == 3000
    assert job.replay.fraction == 0.7 and job.replay_tokens() == 7000
    assert job.training.seed == 3 and job.training.seq_len == 64
    assert job.labels == {"experiment": "e", "source": "domain"}
    ctrl = build_job(AnnealSpec("j-ctl", "e", None, 5000.0, 1.0, 0), META, _lookup)
    assert ctrl.source is None and ctrl.replay_tokens() == 5000
    with pytest.raises(ConfigError, match="base model"):
        build_job(AnnealSpec("j", "e", "domain", 1.0), {**META, "base_model": None}, _lookup)
    with pytest.raises(ConfigError, match=r"training\.seq_len"):
        build_job(
            AnnealSpec("j", "e", "domain", 1.0), {**META, "training": {"seq_len": 1}}, _lookup
        )


def test_result_to_run_counts_training_and_measured_curation():
    result = JobResult.model_validate(
        {
            "job_id": "j-src",
            "metrics": {"t/acc": 0.5},
            "continuous": {"t/logprob_correct": -3.0},
            "params": 1000,
            "training_tokens": 2000,
            "source_tokens": 1000,
            "replay_tokens": 1000,
            "training_flops": 6 * 1000 * 2000.0,
            "curation": [
                {
                    "role": "source",
                    "kind": "licensed",
                    "tokens": 1000,
                    "cost": 4.0,
                    "unit": "usd",
                    "seconds": 0.1,
                    "content_hash": "h",
                }
            ],
            "steps": 10,
            "train_seconds": 1.0,
            "eval_seconds": 1.0,
            "versions": {"torch": "x"},
            "seeds": {"training": 0},
            "data_hash": "d",
            "checkpoint_hash": "c",
        }
    )
    spec = AnnealSpec("j-src", "e", "domain", 1000.0, 0.5, 0)
    run, metrics, meta = result_to_run(spec, result, META, executor="gpu1")
    training_usd = 12e6 / 1e15 * 2.0
    assert run.cost_training == pytest.approx(training_usd)
    assert run.cost_curation == pytest.approx(4.0)
    assert run.compute == pytest.approx(4.0 + training_usd)
    assert run.study == "e" and run.source == "domain" and run.tokens == 1000
    assert {m.name for m in metrics} == {"t/acc", "t/logprob_correct"}
    assert meta["compute_unit"] == "usd" and meta["executor"] == "gpu1"


def test_executors_registry_and_cli(tmp_path: Path):
    token = tmp_path / "tok"
    token.write_text("x" * 32)
    os.chmod(token, 0o600)
    with pytest.raises(ConfigError, match="http"):
        add_executor(tmp_path, "gpu1", "ftp://x", str(token))
    add_executor(tmp_path, "gpu1", "http://10.0.0.5:8765/", str(token))
    assert load_executors(tmp_path)[0].url == "http://10.0.0.5:8765"
    runner = CliRunner()
    res = runner.invoke(cli, ["--project", str(tmp_path), "executors", "list", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)[0]["name"] == "gpu1"
    res = runner.invoke(
        cli,
        [
            "--project",
            str(tmp_path),
            "executors",
            "add",
            "gpu1",
            "--url",
            "http://h:1",
            "--token-file",
            str(token),
        ],
    )
    assert res.exit_code == 2 and "--replace" in res.output
    # Nothing listens there: health reports it down (exit 1), no traceback.
    res = runner.invoke(
        cli,
        [
            "--project",
            str(tmp_path),
            "executors",
            "add",
            "dead",
            "--url",
            "http://127.0.0.1:9",
            "--token-file",
            str(token),
        ],
    )
    res = runner.invoke(cli, ["--project", str(tmp_path), "executors", "health", "dead", "--json"])
    assert res.exit_code == 1 and json.loads(res.stdout)[0]["ok"] is False


def test_hook_register_executor_backends(tmp_path: Path):
    from plugins.manager import load_registry

    registry = load_registry(entry_points=False)
    assert {"http", "local"} <= set(registry.executor_backends)
    token = tmp_path / "tok"
    token.write_text("y" * 32)
    client = registry.executor_backends["http"].connect(
        {"url": "http://127.0.0.1:1", "token_file": str(token)}
    )
    assert isinstance(client, ExecutorClient)
    local = registry.executor_backends["local"].connect({"project_dir": str(tmp_path)})
    assert local.root == tmp_path.resolve()
