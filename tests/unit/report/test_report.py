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
    # the ranking at the smallest budget (fast > slow) differs from the laws' at the target
    assert "The ranking changes" in md
    assert "point estimate (one micro-anneal) | fast" in md
    # and what following the measured winner (fast) alone would give up
    assert "Following the measured smallest-budget winner — the whole budget on **fast**" in md
    assert "torch 2.13.0" in md


def test_report_without_a_plan_says_what_to_do(tmp_path):
    db = str(tmp_path / "empty.duckdb")
    r = CliRunner().invoke(cli, ["--db", db, "report", "--out", str(tmp_path / "o")])
    assert r.exit_code == 2
    assert "--budget" in r.output
