"""``annealplan report`` on a real DuckDB store: files, plots and the point-estimate finding."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from planner.cli import cli
from planner.domain import LawFit, Metric, Run, Source
from planner.store import open_store


def _fit(source, a, b, rng):
    boot = np.column_stack([rng.normal(a, 0.004, 100), rng.normal(b, 0.002, 100)])
    return LawFit(
        study="default",
        metric="acc",
        source=source,
        family="loglinear",
        method="test",
        params={"a": a, "b": b},
        x_ref=1e8,
        boot=boot,
        x_max=8e8,
        n_points=3,
        noise_sd_boot=np.full(100, 0.002),
    )


@pytest.fixture
def db(tmp_path):
    """Two sources whose laws cross: 'fast' leads at small budgets, 'slow' at large ones."""
    path = tmp_path / "r.duckdb"
    store = open_store(path)
    rng = np.random.default_rng(1)
    fast = (0.45, 0.005)
    slow = (0.43, 0.030)
    for name, (a, b) in (("fast", fast), ("slow", slow)):
        store.add_source(Source(name, "files", {}))
        for i, tok in enumerate((1e8, 3e8, 8e8)):
            rid = f"{name}-{i}"
            value = a + b * np.log(tok / 1e8)
            store.ingest_result(
                Run(rid, name, tok, params=1e6, seed=0),
                [Metric(rid, "acc", float(value))],
                {"compute_unit": "tokens", "data_hash": f"d{i}", "versions": {"torch": "2.13.0"}},
            )
    store.ingest_result(
        Run("ctl", "control", 1e8, params=1e6),
        [Metric("ctl", "acc", 0.40)],
        {"compute_unit": "tokens"},
    )
    store.save_fits([_fit("fast", *fast, rng), _fit("slow", *slow, rng)])
    store.close()
    return str(path)


def test_report_writes_markdown_html_and_plots(db, tmp_path):
    out = tmp_path / "rep"
    r = CliRunner().invoke(
        cli,
        ["--db", db, "report", "--out", str(out), "--budget", "1e16flop", "--model-params", "1M"],
        catch_exceptions=False,
    )
    assert r.exit_code == 0, r.output
    md = (out / "report.md").read_text()
    assert (out / "report.html").read_text().startswith("<!doctype html>")
    assert (out / "laws-acc.png").stat().st_size > 1000
    assert (out / "frontier.png").stat().st_size > 1000
    for heading in (
        "## Runs and fitted laws",
        "## Crossovers",
        "## Allocation",
        "## Reproducibility",
    ):
        assert heading in md
    # the fitted laws cross, most draws with them: the ranking changes, said with P
    assert "By the fitted laws **the ranking changes:** slow overtakes fast at ≈ 223M tokens" in md
    assert "with P = 1.00" in md
    assert "point estimate (one micro-anneal) | fast" in md
    # and what following the measured winner (fast) alone would give up, under the laws
    assert (
        "Following the measured smallest-budget winner, the whole budget on fast, is "
        "predicted under the laws to gain" in md
    )
    assert "torch 2.13.0" in md


def test_report_without_a_plan_says_what_to_do(tmp_path):
    db = str(tmp_path / "empty.duckdb")
    r = CliRunner().invoke(cli, ["--db", db, "report", "--out", str(tmp_path / "o")])
    assert r.exit_code == 2
    assert "--budget" in r.output


@pytest.fixture
def noisy_store(tmp_path):
    """web and synthetic with parallel laws (synthetic ahead everywhere), but web's two
    seeds at its smallest budget measured above synthetic: a raw order that is noise."""
    store = open_store(tmp_path / "n.duckdb")
    rng = np.random.default_rng(2)
    laws = {"web": (0.43, 0.01), "synthetic": (0.45, 0.01)}
    for name, (a, b) in laws.items():
        store.add_source(Source(name, "files", {}))
        for i, tok in enumerate((1e8, 3e8, 8e8)):
            value = a + b * np.log(tok / 1e8)
            seeds = (0, 1) if (name, i) == ("web", 0) else (0,)
            for seed in seeds:
                rid = f"{name}-{i}-{seed}"
                measured = {0: 0.47, 1: 0.44}[seed] if (name, i) == ("web", 0) else value
                store.ingest_result(
                    Run(rid, name, tok, params=1e6, seed=seed),
                    [Metric(rid, "acc", float(measured))],
                    {"compute_unit": "tokens"},
                )
    for seed, v in enumerate((0.40, 0.41, 0.395)):
        rid = f"ctl-{seed}"
        store.ingest_result(
            Run(rid, "control", 1e8, params=1e6, seed=seed),
            [Metric(rid, "acc", v)],
            {"compute_unit": "tokens"},
        )
    store.save_fits([_fit(name, *law, rng) for name, law in laws.items()])
    yield store
    store.close()


def test_report_tells_the_plan_story_noise_ties_and_seed_spread(noisy_store, tmp_path):
    import dataclasses

    from planner.laws.decision import PairBelief
    from planner.report import build_report
    from tests.helpers.plans import story_plan

    plan = dataclasses.replace(story_plan(), metric="acc")
    tie = PairBelief("synthetic", "web", 60.0, 0.55, 0.01)
    files = build_report(
        noisy_store, tmp_path / "rep", metric="acc", plan=plan, beliefs=[tie], plan_id="plan-7"
    )
    md = files.markdown.read_text()
    f = files.findings
    # the measured order (web first) against the laws' (synthetic first, but tied)
    assert f.ranking_at_smallest_budget == ("web", "synthetic")
    assert f.ranking_predicted_at_target == ("synthetic", "web")
    assert not f.ranking_changes and "ranking changes" not in md
    assert f.story[0] == (
        "At the smallest budgets the ranking measured (web > synthetic) differs from the "
        "laws' order at the target (synthetic ≈ web), but no crossover is probable "
        "(P < 0.5): the laws attribute the difference to noise."
    )
    assert "synthetic and web are tied at the target: P(synthetic beats web) = 0.55" in md
    assert f.ties == (tie,)
    assert all(sentence in md for sentence in f.story)
    # both predictions, the rule and H
    assert (
        "predicts a gain of **+0.071** over the control anneal (90% interval 0.058 to 0.083)" in md
    )
    assert "under the coverage rule, H = 0.38" in md
    assert "it would predict +0.083 (90% interval 0.069 to 0.097)" in md
    # the certificate, as a table and in words
    assert "| synthetic | capped | 1.2M | 0.000733 | > λ, trust region |" in md
    assert "| textbook | zero | 0 | 0.000151 | < λ, not bought |" in md
    assert "share the same marginal gain per $, λ = 0.000412 per $" in md
    assert "those left at zero (textbook) earn less" in md
    assert "capped ones earn more (synthetic at its trust region)" in md
    # the confirmation not yet run, with its command; the trust region
    assert "not run yet; run it with: annealplan confirm plan-7" in md
    assert "(`annealplan confirm plan-7`)" in md
    assert "trust region: each law is trusted up to 10× its largest measured budget" in md
    assert "the laws are not trusted past 1.2M tokens of synthetic; measure larger first" in md
    # the seeds: web's two at its smallest budget and the control's three
    assert "## Seed spread" in md
    assert "| web | 100M tokens | 0, 1 | 0.47, 0.44 | 0.03 |" in md
    assert "| control | 100M tokens | 0, 1, 2 | 0.4, 0.41, 0.395 | 0.015 |" in md


def test_report_shows_the_measured_confirmation_beside_the_predictions(noisy_store, tmp_path):
    import dataclasses

    from planner.report import build_report
    from tests.helpers.plans import story_plan

    plan = dataclasses.replace(story_plan(measured_gain=0.0105), metric="acc")
    files = build_report(noisy_store, tmp_path / "rep", metric="acc", plan=plan, beliefs=[])
    md = files.markdown.read_text()
    assert "The mixed anneal that confirms it measured **+0.0105**." in md
    assert (
        "compared with the allocation (90% interval 0.02 to 0.04). The allocation's mixed "
        "anneal measured +0.0105 against its predicted +0.012." in md
    )
    assert "- measured gain: +0.0105 (run mix-1)" in md
    assert "- predicted (coverage): +0.012 [+0.008, +0.016]" in md
    assert "- additive: +0.014 [+0.01, +0.018]" in md
    assert "| allocation, measured (mixed anneal) | web@0.77+synthetic@0.23 | +0.0105 |" in md
    assert files.findings.story[-1].endswith(
        "The allocation's mixed anneal measured +0.0105 (run mix-1)."
    )
