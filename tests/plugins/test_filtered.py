"""The filtered kind: a pool scored by a classifier, streamed until enough is kept."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from planner.errors import ConfigError
from plugins.manager import load_registry
from plugins.sources.packing import PoolTooSmall, load_tokens
from tests.helpers.tiny import documents

REGISTRY = load_registry(entry_points=False)
KIND = REGISTRY.source_kind("filtered")


def test_light_classifier_keeps_good_documents(quality_pool, tmp_path, tiny_tokenizer):
    config = KIND.parse_config(
        {"pool": str(quality_pool["pool"]), "labelled": str(quality_pool["labelled"])}
    )
    scores = KIND.scores(config)
    good, bad = scores[: quality_pool["good"]], scores[quality_pool["good"] :]
    assert (good >= 0.5).mean() > 0.9 and (bad < 0.5).mean() > 0.9
    a = KIND.materialize(config, 1500, tmp_path / "a", 4, tiny_tokenizer)
    b = KIND.materialize(config, 1500, tmp_path / "b", 4, tiny_tokenizer)
    assert a.tokens == len(load_tokens(a.dest)) == 1500 and a.content_hash == b.content_hash
    text = tiny_tokenizer.decode(load_tokens(a.dest).tolist())
    assert "zzq" not in text and "lorem" not in text
    d = a.curation.details
    # Streaming: it scored only part of the pool, about tokens / keep rate.
    assert a.curation.documents_scored < quality_pool["good"] + quality_pool["bad"]
    assert d["tokens_kept"] >= 1500 and d["tokens_scanned"] > d["tokens_kept"]
    assert a.curation.cost == pytest.approx(d["tokens_scanned"] * d["scan_flops_per_token"])
    assert 0 < d["keep_rate"] < 1


def test_cap_is_what_the_pool_holds_above_the_threshold(quality_pool, tmp_path, tiny_tokenizer):
    loose = KIND.parse_config(
        {"pool": str(quality_pool["pool"]), "labelled": str(quality_pool["labelled"])}
    )
    strict = KIND.parse_config(
        {
            "pool": str(quality_pool["pool"]),
            "labelled": str(quality_pool["labelled"]),
            "threshold": 0.97,
        }
    )
    cap_loose, cap_strict = (
        KIND.cap_tokens(loose, tiny_tokenizer),
        KIND.cap_tokens(strict, tiny_tokenizer),
    )
    assert 0 < cap_strict < cap_loose
    with pytest.raises(
        PoolTooSmall, match=rf"holds only {int(cap_strict):,} tokens.*lower the threshold"
    ):
        KIND.materialize(strict, int(cap_strict) + 1, tmp_path / "x", 0, tiny_tokenizer)
    assert not (tmp_path / "x").exists()


def test_transformers_classifier_scores_and_accounts(
    quality_pool, tmp_path, tiny_classifier, tiny_tokenizer
):
    config = KIND.parse_config(
        {
            "pool": str(quality_pool["pool"]),
            "classifier": str(tiny_classifier),
            "threshold": 0.3,
            "batch_size": 8,
        }
    )
    scores = KIND.scores(config)
    assert scores.shape == (120,) and np.all((scores >= 0) & (scores <= 1))
    kept_tokens = KIND.cap_tokens(config, tiny_tokenizer)
    want = int(min(400, kept_tokens))
    a = KIND.materialize(config, want, tmp_path / "a", 1, tiny_tokenizer)
    b = KIND.materialize(config, want, tmp_path / "b", 1, tiny_tokenizer)
    assert a.content_hash == b.content_hash and a.tokens == want
    d = a.curation.details
    n_params = d["scan_flops_per_token"] / 2
    assert a.curation.cost == pytest.approx(2 * n_params * d["classifier_tokens"])
    assert a.curation.documents_scored % 8 == 0 or a.curation.documents_scored == 120
    choice = KIND.default_cost(config)
    model = REGISTRY.build_cost_model(choice.model, choice.params)
    assert model.scanned_per_kept() == pytest.approx(1 / 0.7)


def test_classifier_choice_is_validated(quality_pool):
    with pytest.raises(ConfigError, match=r"set exactly one of classifier"):
        KIND.parse_config({"pool": str(quality_pool["pool"])})
    one_label = quality_pool["labelled"].with_name("one.jsonl")
    one_label.write_text("".join(f'{{"text": "{t}", "label": 1}}\n' for t in documents(5)))
    config = KIND.parse_config({"pool": str(quality_pool["pool"]), "labelled": str(one_label)})
    with pytest.raises(Exception, match=r"need both good"):
        KIND.scores(config)


def test_without_the_executor_extra_the_classifier_names_it(quality_pool, monkeypatch):
    from plugins.sources.filtered import FilteredConfig, _LightScorer

    # Fault injection: a planner-only install (`pip install annealplan`) has no scikit-learn.
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.feature_extraction.text", None)
    config = FilteredConfig(pool=[str(quality_pool["pool"])], labelled=["x"])
    with pytest.raises(
        ConfigError, match=r"light classifier needs sklearn.*annealplan\[executor\]"
    ):
        _LightScorer(["a", "b"], [0, 1], config.positive_label)
