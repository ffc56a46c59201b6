"""Stage 1 on a mixture: several domain sources materialised through their plugins and
packed with the replay share (a real tiny materialise; no trainer runs)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from executors.kinds import load_source_kinds
from executors.protocol import AnnealJobSpec
from executors.stages.context import JobFailed, WorkerConfig
from executors.stages.materialize import materialize
from tests.helpers.tiny import build_tokenizer, documents, load_tokenizer, write_jsonl


def _spec(**over) -> AnnealJobSpec:
    raw = {
        "job_id": "job-mix",
        "base_model": "model",
        "source": None,
        "mixture": [
            {"name": "a", "kind": "files", "config": {"paths": ["data/a.jsonl"]}, "tokens": 240},
            {"name": "b", "kind": "files", "config": {"paths": ["data/b.jsonl"]}, "tokens": 160},
        ],
        "replay": {
            "source": {"kind": "files", "config": {"paths": ["data/r.jsonl"]}},
            "fraction": 0.5,
        },
        "training": {"seq_len": 8, "micro_batch": 2, "checkpoint_every_steps": 10**6},
        **over,
    }
    return AnnealJobSpec.model_validate(raw)


@pytest.fixture
def cfg(tmp_path: Path, monkeypatch) -> WorkerConfig:
    root = tmp_path / "root"
    build_tokenizer(root / "model")
    for i, name in enumerate("abr"):
        write_jsonl(root / "data" / f"{name}.jsonl", documents(120, seed=i + 1))
    cfg = WorkerConfig(state_dir=tmp_path / "state", root=root, job_id="job-mix", token="t" * 32)
    cfg.job_dir.mkdir(parents=True)
    monkeypatch.chdir(root)  # sources' relative paths resolve under the root (run_stages does it)
    return cfg


def _materialize(spec: AnnealJobSpec, cfg: WorkerConfig):
    kinds = load_source_kinds(entry_points=False).kinds
    return materialize(spec, cfg, load_tokenizer(cfg.root / "model"), kinds)


def test_a_mixture_packs_each_source_and_the_replay_share_of_their_sum(cfg):
    spec = _spec()
    assert (spec.source_tokens(), spec.replay_tokens()) == (400, 400)
    manifest = _materialize(spec, cfg)
    # each part's tokens in whole sequences of 8: 30 + 20 + 50
    assert manifest.sequences == 100 and manifest.seq_len == 8
    assert [(c.role, c.tokens) for c in manifest.curation] == [
        ("source", 240),
        ("source", 160),
        ("replay", 400),
    ]
    assert [c.details.get("mixture_source") for c in manifest.curation] == ["a", "b", None]
    packed = np.load(cfg.files.train_data)
    assert packed.shape == (100, 8)
    # only the packed array and the manifest stay: each part's folder is gone
    assert sorted(p.name for p in cfg.files.data.iterdir()) == ["manifest.json", "train.npy"]


def test_a_mixture_packs_the_same_tokens_as_its_parts_would(cfg, tmp_path: Path):
    """Each source of a mixture contributes what a one-source job of its tokens would."""
    mixed = _materialize(_spec(), cfg)
    single = _spec(
        mixture=None,
        source={"kind": "files", "config": {"paths": ["data/a.jsonl"]}, "tokens": 240},
        replay=None,
    )
    cfg_a = WorkerConfig(state_dir=tmp_path / "state-a", root=cfg.root, job_id="a", token="t" * 32)
    cfg_a.job_dir.mkdir(parents=True)
    alone = _materialize(single, cfg_a)
    assert mixed.curation[0].content_hash == alone.curation[0].content_hash


def test_a_bad_mixture_source_fails_the_job_naming_its_field(cfg):
    spec = _spec()
    parts = list(spec.mixture)
    parts[1] = parts[1].model_copy(update={"kind": "nope"})
    with pytest.raises(JobFailed, match=r"mixture\.1: no installed plugin") as e:
        _materialize(spec.model_copy(update={"mixture": parts}), cfg)
    assert e.value.code == "unknown_source_kind"
    parts[1] = parts[1].model_copy(update={"kind": "files", "config": {"paths": ["data/x.jsonl"]}})
    with pytest.raises(JobFailed, match=r"mixture\.1 \(files\)") as e:
        _materialize(spec.model_copy(update={"mixture": parts}), cfg)
    assert e.value.code == "materialize_failed"
