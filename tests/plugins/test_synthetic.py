"""The synthetic kind: real generation with a tiny local causal LM, batched and resumable."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from planner.errors import ConfigError, PluginError
from plugins.manager import load_registry
from plugins.sources import synthetic
from plugins.sources.packing import PoolTooSmall, load_tokens, read_manifest
from tests.helpers.tiny import documents, write_jsonl

REGISTRY = load_registry(entry_points=False)
KIND = REGISTRY.source_kind("synthetic")


@pytest.fixture
def config(tmp_path, tiny_causal_lm):
    seeds = write_jsonl(tmp_path / "seeds.jsonl", documents(5, seed=31))
    return lambda **extra: KIND.parse_config(
        {
            "generator": str(tiny_causal_lm),
            "seeds": str(seeds),
            "max_new_tokens": 24,
            "max_prompt_tokens": 48,
            "batch_size": 4,
            **extra,
        }
    )


def cached_items(cache: Path) -> list[dict]:
    return [item for f in sorted(cache.glob("batch-*.json")) for item in json.loads(f.read_text())]


def test_generates_exact_tokens_deterministically_and_accounts_the_compute(
    config, tmp_path, tiny_tokenizer
):
    a = KIND.materialize(
        config(cache_dir=str(tmp_path / "c1")), 200, tmp_path / "a", 5, tiny_tokenizer
    )
    b = KIND.materialize(
        config(cache_dir=str(tmp_path / "c2")), 200, tmp_path / "b", 5, tiny_tokenizer
    )
    assert a.tokens == b.tokens == len(load_tokens(a.dest)) == 200
    assert a.content_hash == b.content_hash  # generated twice from scratch, same text
    details = a.curation.details
    assert details["batches_reused"] == 0 and details["batches"] >= 2
    # The manifest's cost is what was really processed: every prompt and output token of
    # every generated batch, at 2·N FLOPs per token.
    items = cached_items(Path(details["cache"]))
    assert len(items) == details["batches"] * 4
    processed = sum(i["prompt_tokens"] + i["output_tokens"] for i in items)
    assert a.curation.generator_tokens == processed == details["generator_tokens_this_run"]
    n_params = synthetic.count_params(str(config().generator))
    assert a.curation.cost == pytest.approx(2 * n_params * processed) and a.curation.unit == "flops"
    styles = {i["style"] for i in items}
    assert styles <= {"like an encyclopedia", "as questions and answers"} and len(styles) == 2
    manifest = read_manifest(a.dest)
    assert manifest["curation"]["generator_tokens"] == processed
    # The default cost model is the generation model with the same N.
    choice = KIND.default_cost(config())
    assert choice.model == "generation" and choice.params["generator_params"] == n_params


def test_resumes_from_finished_batches_after_a_crash(config, tmp_path, tiny_tokenizer, monkeypatch):
    cfg = config(cache_dir=str(tmp_path / "cache"))
    reference = KIND.materialize(
        config(cache_dir=str(tmp_path / "ref")), 200, tmp_path / "ref-out", 2, tiny_tokenizer
    )
    real = synthetic._Generator.generate
    calls = {"n": 0}

    def crash_on_second_batch(self, prompts, seed):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("GPU fell over")
        return real(self, prompts, seed)

    monkeypatch.setattr(synthetic._Generator, "generate", crash_on_second_batch)
    with pytest.raises(RuntimeError, match="GPU fell over"):
        KIND.materialize(cfg, 200, tmp_path / "out", 2, tiny_tokenizer)
    assert not (tmp_path / "out").exists()
    monkeypatch.setattr(synthetic._Generator, "generate", real)
    resumed = KIND.materialize(cfg, 200, tmp_path / "out", 2, tiny_tokenizer)
    assert resumed.curation.details["batches_reused"] == 1
    assert resumed.content_hash == reference.content_hash
    assert resumed.curation.generator_tokens == reference.curation.generator_tokens
    assert resumed.curation.details["generator_tokens_this_run"] < resumed.curation.generator_tokens


def test_usd_pricing_and_bounded_rounds(config, tmp_path, tiny_tokenizer):
    cfg = config(
        cost_unit="usd",
        usd_per_gpu_hour=4.0,
        flops_per_gpu_hour=1e15,
        max_rounds=1,
        cache_dir=str(tmp_path / "c"),
        temperature=0,
    )
    assert KIND.cap_tokens(cfg) == 5 * 2 * 1 * 24
    done = KIND.materialize(cfg, 60, tmp_path / "usd", 0, tiny_tokenizer)
    flops = done.curation.details["flops"]
    assert done.curation.unit == "usd" and done.curation.cost == pytest.approx(flops / 1e15 * 4.0)
    with pytest.raises(PoolTooSmall, match=r"holds only [\d,]+ tokens .* raise max_rounds"):
        KIND.materialize(cfg, 10_000, tmp_path / "too-much", 0, tiny_tokenizer)
    assert not (tmp_path / "too-much").exists()


def test_bad_generator_and_template(config, tmp_path, tiny_tokenizer):
    with pytest.raises(
        ConfigError, match=r"template: Value error, the template must contain \{style\}"
    ):
        config(template="Rewrite: {document}")
    bad = config(generator=str(tmp_path), cache_dir=str(tmp_path / "c"))
    with pytest.raises(PluginError, match=r"not a local model folder"):
        KIND.materialize(bad, 10, tmp_path / "x", 0, tiny_tokenizer)
