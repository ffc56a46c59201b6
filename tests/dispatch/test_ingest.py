"""Translation at the dispatcher's edges, without a daemon: an ``AnnealSpec`` and the
experiment's meta into an executor job, and a job's result into a run with its metrics."""

from __future__ import annotations

import pytest

from executors.protocol import JobResult
from planner.dispatch.ingest import build_job, result_to_run
from planner.domain import AnnealSpec, Source
from planner.errors import ConfigError


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
