"""The sources façade that ``annealplan sources`` and the TUI's Sources screen share:
building a source through its kind, pricing a token count, loading a tokenizer."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from planner.errors import ConfigError, PluginError
from planner.sources.session import build_source, load_tokenizer, quote_cost
from planner.units import Rates, Unit
from plugins.manager import load_registry

RATES = Rates(flops_per_gpu_hour=1e15, usd_per_gpu_hour=3.0)


@pytest.fixture(scope="module")
def registry():
    return load_registry(entry_points=False)


@pytest.fixture
def docs(tmp_path: Path, monkeypatch) -> Path:
    with (tmp_path / "a.jsonl").open("w") as f:
        for i in range(40):
            f.write(json.dumps({"text": f"Document {i} about clinical trials."}) + "\n")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_a_source_is_built_through_its_kind_with_absolute_paths(registry, docs):
    src = build_source(
        registry,
        RATES,
        kind_name="licensed",
        name="pubmed",
        raw_config={"paths": ["*.jsonl"], "usd_per_token": 2e-6, "max_tokens": 1e6},
    )
    assert src.config["paths"] == [str(docs / "*.jsonl")]
    assert (src.cost.model, src.cost.unit) == ("linear", Unit.USD)
    # the cap is what the files hold (estimated from characters), under max_tokens
    assert 0 < src.cap_tokens < 1e6 and src.plugin == "plugins.sources.licensed"
    with pytest.raises(PluginError, match="did you mean 'licensed'"):
        build_source(registry, RATES, kind_name="licenced", name="x", raw_config={})
    with pytest.raises(ConfigError, match="has no default cost model"):
        build_source(
            registry,
            RATES,
            kind_name="files",
            name="web",
            raw_config={"paths": ["*.jsonl"]},
            cost_params={"per_token": 1.0},
        )


def test_a_cost_model_that_prices_compute_gets_the_project_rates(registry, docs):
    src = build_source(
        registry,
        RATES,
        kind_name="files",
        name="web",
        raw_config={"paths": ["*.jsonl"]},
        cost_model="generation",
        cost_params={"generator_params": 1e9, "unit": "usd"},
    )
    assert src.cost.params["usd_per_gpu_hour"] == 3.0
    assert src.cost.params["flops_per_gpu_hour"] == 1e15
    quote = quote_cost(src, registry, 1e6, rates=RATES)
    # 2·N·(1 + r)·n FLOPs at r = 1, priced at 3 USD per 1e15 FLOPs
    assert quote.unit is Unit.USD and quote.cost == pytest.approx(4e15 / 1e15 * 3.0)
    assert quote.marginal_cost_per_token == pytest.approx(quote.cost / 1e6)
    in_hours = quote_cost(src, registry, 1e6, unit=Unit.GPU_HOURS, rates=RATES)
    assert in_hours.cost == pytest.approx(4.0) and not in_hours.free


def test_a_free_source_quotes_zero_and_a_cap_is_flagged(registry, docs):
    free = build_source(
        registry, RATES, kind_name="files", name="web", raw_config={"paths": ["*.jsonl"]}
    )
    quote = quote_cost(free, registry, 1e12, rates=RATES)
    assert (quote.cost, quote.unit, quote.free) == (0.0, Unit.USD, True)
    assert quote.formula == "free (no cost model)"
    assert quote.exceeds_cap == (free.cap_tokens is not None)
    assert free.cap_tokens is not None and free.cap_tokens < 1e12


def test_a_missing_transformers_names_the_extra(monkeypatch, tmp_path: Path):
    assert load_tokenizer(None) is None
    with pytest.raises(ConfigError, match="cannot load a tokenizer"):
        load_tokenizer(str(tmp_path / "nowhere"))
    # Fault injection: a planner-only install has no transformers.
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(ConfigError, match=r"pip install 'annealplan\[executor\]'"):
        load_tokenizer(str(tmp_path))
