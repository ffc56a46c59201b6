"""The demo domain: deterministic data, tasks that evaluate offline, cached models."""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from examples.domain import base_model as bm  # noqa: E402
from examples.domain import data as dm  # noqa: E402
from examples.domain import evaluation as ev  # noqa: E402
from examples.domain import kb as kbm  # noqa: E402

TINY_SHAPE = bm.TinyLlamaShape(
    vocab_size=400,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=1,
    num_attention_heads=2,
)
TINY_RECIPE = bm.PretrainRecipe(steps=2, batch_size=2, seq_len=32, warmup_steps=1)


def _digest(folder: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.iterdir())
        if p.is_file()
    }


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("demo-cache")


@pytest.fixture(scope="module")
def tiny_base(cache: Path) -> Path:
    return bm.prepare_base_model(cache, shape=TINY_SHAPE, recipe=TINY_RECIPE, name="tiny-base")


def test_knowledge_base_is_deterministic() -> None:
    assert kbm.make_kb(7) == kbm.make_kb(7)
    assert kbm.make_kb(7) != kbm.make_kb(8)
    kb = kbm.make_kb()
    assert len({d.name for d in kb.drugs}) == kbm.N_DRUGS
    assert len(kb.web_covered) == kbm.N_DRUGS // 4
    assert kbm.domain_mc_docs(kb) == kbm.domain_mc_docs(kbm.make_kb())


def test_eval_docs_are_well_formed() -> None:
    kb = kbm.make_kb()
    for doc in kbm.domain_mc_docs(kb) + kbm.general_mc_docs():
        assert len(doc["choices"]) == 4 == len(set(doc["choices"]))
        assert 0 <= doc["gold"] < 4
    by_name = kb.by_name()
    for doc in kbm.domain_gen_docs(kb):
        name = doc["query"].split(" of ")[1].split(" is")[0]
        assert doc["answer"] == f"{by_name[name].dose_mg} mg"


def test_web_mentions_only_its_covered_drugs() -> None:
    kb = kbm.make_kb()
    covered = {kb.drugs[i].name for i in kb.web_covered}
    others = {d.name for d in kb.drugs} - covered
    text = " ".join(kbm.web_document(kb, __import__("random").Random(3)) for _ in range(300))
    # Interaction partners may be any drug; subjects are covered ones only.
    subjects = {w.strip(".,!") for w in text.split()} & others
    partners = {kb.drugs[i].interacts_with for i in kb.web_covered}
    assert subjects <= partners


def test_prepare_data_is_deterministic(tmp_path: Path) -> None:
    a = dm.prepare_data(tmp_path / "a")
    b = dm.prepare_data(tmp_path / "b")
    assert _digest(a.root) == _digest(b.root)
    assert a.counts["seeds"] == kbm.N_DRUGS
    other = dm.prepare_data(tmp_path / "c", seed=99)
    assert _digest(other.root)["web.jsonl"] != _digest(a.root)["web.jsonl"]
    # A second call with the marker in place reuses the files.
    before = a.web.stat().st_mtime_ns
    dm.prepare_data(tmp_path / "a")
    assert a.web.stat().st_mtime_ns == before


def test_prepare_base_model_caches(cache: Path, tiny_base: Path, monkeypatch) -> None:
    assert (tiny_base / bm.MARKER).exists()
    assert (tiny_base / "config.json").exists() and (tiny_base / "tokenizer.json").exists()
    before = _digest(tiny_base)

    def no_training(*args, **kwargs):
        raise AssertionError("a cached base model was trained again")

    monkeypatch.setattr(bm, "train_lm", no_training)
    monkeypatch.setattr(bm, "train_tokenizer", no_training)
    again = bm.prepare_base_model(cache, shape=TINY_SHAPE, recipe=TINY_RECIPE, name="tiny-base")
    assert again == tiny_base and _digest(again) == before


def test_prepare_base_model_is_deterministic(tmp_path: Path, tiny_base: Path) -> None:
    other = bm.prepare_base_model(tmp_path, shape=TINY_SHAPE, recipe=TINY_RECIPE, name="x")
    a, b = _digest(tiny_base), _digest(other)
    assert a["model.safetensors"] == b["model.safetensors"]
    assert a["tokenizer.json"] == b["tokenizer.json"]


def test_tasks_evaluate_offline(tiny_base: Path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    out = ev.evaluate(tiny_base, limit=8, batch_size=8)
    for key in (
        "demo_domain_mc/acc",
        "demo_domain_mc/p_gold",
        "demo_domain_gen/exact_match",
        "demo_domain_dose/acc",
        "demo_domain_dose/p_gold",
        "demo_general_mc/acc",
        "demo_general_mc/p_gold",
    ):
        assert 0.0 <= out[key] <= 1.0, key
    assert os.environ["HF_HUB_OFFLINE"] == "1"


def test_task_docs_match_the_knowledge_base() -> None:
    tm = ev.task_manager()
    assert set(ev.TASKS) <= set(tm.all_tasks)
    sys.path.insert(0, str(ev.TASKS_DIR))
    try:
        import utils as task_utils  # the module lm-eval loads beside the YAMLs
    finally:
        sys.path.remove(str(ev.TASKS_DIR))
    assert task_utils.load_domain_mc()["test"].num_rows == kbm.N_DRUGS
    assert list(task_utils.load_domain_gen()["test"]) == kbm.domain_gen_docs(kbm.make_kb())
    dose = list(task_utils.load_domain_dose()["test"])
    gen = kbm.domain_gen_docs(kbm.make_kb())
    assert [d["choices"][d["gold"]] for d in dose] == [g["answer"] for g in gen]
    assert task_utils.load_general_mc(seed=5)["test"].num_rows == len(kbm.general_mc_docs(5))


def test_source_specs_validate_and_materialize(cache: Path, tiny_base: Path) -> None:
    """Each demo source passes its real kind's validation and materialises a little."""
    from transformers import AutoTokenizer

    from examples.domain import anneal as an
    from plugins.sources.packing import read_manifest

    kinds = an.source_kinds()
    specs = dm.source_specs(cache, generator=tiny_base)
    assert set(specs) == {"replay", "web", "textbook", "synthetic", "filtered"}
    tok = AutoTokenizer.from_pretrained(tiny_base)
    for name, spec in specs.items():
        assert spec.kind in kinds, f"{name}: no built-in source kind {spec.kind!r}"
        kind = kinds[spec.kind]
        config = kind.parse_config(spec.config)
        if name == "textbook":
            assert kind.cap_tokens(config, tok) == dm.TEXTBOOK_MAX_TOKENS
        if name == "synthetic":
            # A random generator writes junk, but through the real generation path.
            spec = dm.SourceSpec(
                name, spec.kind, {**spec.config, "max_new_tokens": 8, "batch_size": 8}, ""
            )
        got = an.materialize(spec, 64, cache / "mat" / name, 0, tok, kinds)
        assert len(got.ids) == 64
        assert read_manifest(cache / "mat" / name)["tokens"] == 64


def test_relative_paths(cache: Path) -> None:
    specs = dm.source_specs(cache, relative_to=cache)
    paths = [specs["synthetic"].config["generator"], *specs["filtered"].config["labelled"]]
    for spec in specs.values():
        paths += spec.config.get("paths", []) + spec.config.get("pool", [])
    assert len(paths) == 6
    for p in paths:
        assert not Path(p).is_absolute()
    assert all((cache / p).exists() for p in paths if p.endswith(".jsonl"))
