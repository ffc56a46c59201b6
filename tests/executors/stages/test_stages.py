"""The stages run on their own, without the daemon or its journal (as a batch job's script
would run them): a finished stage is skipped, an unreadable record redoes its stage."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from executors.kinds import load_source_kinds
from executors.protocol import AnnealJobSpec, Progress
from executors.stages.context import JobFailed, WorkerConfig
from executors.stages.materialize import materialize
from executors.stages.records import Manifest, TrainState
from executors.stages.train import train
from tests.helpers.tiny import build_tokenizer, documents, load_tokenizer, write_jsonl

STUB = Path(__file__).resolve().parents[2] / "reliability" / "stub_trainer.py"


@pytest.fixture
def job(tmp_path: Path, monkeypatch) -> tuple[AnnealJobSpec, WorkerConfig]:
    root = tmp_path / "root"
    build_tokenizer(root / "model")
    write_jsonl(root / "data" / "a.jsonl", documents(120, seed=1))
    write_jsonl(root / "data" / "b.jsonl", documents(120, seed=2))
    spec = AnnealJobSpec.model_validate(
        {
            "job_id": "job-1",
            "base_model": "model",
            "source": {"kind": "files", "config": {"paths": ["data/a.jsonl"]}, "tokens": 400},
            "replay": {
                "source": {"kind": "files", "config": {"paths": ["data/b.jsonl"]}},
                "tokens": 400,
            },
            "training": {"seq_len": 8, "micro_batch": 2, "checkpoint_every_steps": 10**6},
        }
    )
    cfg = WorkerConfig(state_dir=tmp_path / "state", root=root, job_id="job-1", token="t" * 32)
    cfg.job_dir.mkdir(parents=True)
    monkeypatch.chdir(root)  # sources' relative paths resolve under the root (run_stages does it)
    return spec, cfg


def _materialize(spec: AnnealJobSpec, cfg: WorkerConfig) -> Manifest:
    kinds = load_source_kinds(entry_points=False).kinds
    return materialize(spec, cfg, load_tokenizer(cfg.root / "model"), kinds)


def test_materialize_packs_once_and_redoes_an_unreadable_manifest(job, capsys):
    spec, cfg = job
    first = _materialize(spec, cfg)
    assert first.sequences == 100 and first.seq_len == 8
    assert [c.role for c in first.curation] == ["source", "replay"]
    packed = cfg.files.train_data
    made = packed.stat().st_mtime_ns
    assert _materialize(spec, cfg) == first and packed.stat().st_mtime_ns == made
    cfg.files.manifest.write_text('{"data_hash": "')  # a torn write, as after a disk fault
    again = _materialize(spec, cfg)
    assert "materialising the data again" in capsys.readouterr().out
    # the same seed packs the same data (only the seconds it took differ)
    assert (again.data_hash, again.sequences) == (first.data_hash, first.sequences)
    assert Manifest.read(cfg.files.manifest) == again


def test_an_unknown_kind_fails_the_job_with_the_installed_ones(job):
    spec, cfg = job
    spec = spec.model_copy(update={"source": spec.source.model_copy(update={"kind": "nope"})})
    with pytest.raises(JobFailed, match="no installed plugin provides source kind 'nope'") as e:
        _materialize(spec, cfg)
    assert e.value.code == "unknown_source_kind" and "files" in e.value.message


def test_train_runs_the_trainer_and_retrains_over_an_unreadable_state(job, monkeypatch, capsys):
    spec, cfg = job
    monkeypatch.setenv("ANNEALPLAN_EXECUTOR_TRAINER", str(STUB))
    manifest = Manifest(data_hash="x", sequences=10, seq_len=8, curation=[])
    seen: list[Progress] = []
    state = train(spec, cfg, manifest, seen.append)
    assert state.steps == 5 and [p.step for p in seen] == [1, 2, 3, 4, 5]
    plan = json.loads(cfg.files.plan.read_text())
    assert plan["total_steps"] == 5 and plan["journal"] == str(cfg.journal_path)
    # Done: the next attempt skips training.
    assert train(spec, cfg, manifest, seen.append) == state and len(seen) == 5
    cfg.files.train_state.write_text("{}")
    again = train(spec, cfg, manifest, seen.append)
    # the same training again (only the seconds it took differ)
    assert again.model_copy(update={"train_seconds": state.train_seconds}) == state
    assert len(seen) == 10
    assert "training again" in capsys.readouterr().out
    assert TrainState.read(cfg.files.train_state) == again


def test_too_few_sequences_for_one_step_fails_the_job(job):
    spec, cfg = job
    manifest = Manifest(data_hash="x", sequences=1, seq_len=8, curation=[])
    with pytest.raises(JobFailed, match="one optimizer step needs 2") as e:
        train(spec, cfg, manifest, lambda p: None)
    assert e.value.code == "too_few_tokens"
