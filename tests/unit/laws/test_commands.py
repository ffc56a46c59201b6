"""``annealplan fit`` and ``annealplan predict`` on an imported runs table."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from planner.cli import cli

X = np.logspace(18, 20, 5)


def _imported(tmp_path, lines: list[str]) -> tuple[CliRunner, str]:
    """A store at ``tmp_path`` with the runs table ``lines`` imported; the runner and --db."""
    path = tmp_path / "runs.csv"
    path.write_text("\n".join(lines) + "\n")
    db = str(tmp_path / "a.duckdb")
    run = CliRunner()
    out = run.invoke(cli, ["--db", db, "runs", "import", str(path)])
    assert out.exit_code == 0, out.output
    return run, db


def test_fit_then_predict(tmp_path):
    lines = ["source,compute,metric,value"]
    for name, a in (("web", 1.0), ("books", 1.4)):
        for c in X:
            lines.append(f"{name},{c},loss,{2.0 + a * (c / X.max()) ** -0.3:.6f}")
    run, db = _imported(tmp_path, lines)
    out = run.invoke(cli, ["--db", db, "fit", "--bootstrap", "100", "--json"])
    assert out.exit_code == 0, out.output
    fits = json.loads(out.output)
    assert {f["source"] for f in fits} == {"web", "books"} and all(f["success"] for f in fits)
    # P(this source beats the other) at ten times the largest run: web's loss is lower
    by = {f["source"]: f for f in fits}
    assert by["web"]["beats_at"] == X.max() * 10
    assert by["web"]["beats"]["books"] > 0.95
    assert by["web"]["beats"]["books"] == 1.0 - by["books"]["beats"]["web"]
    text = run.invoke(cli, ["--db", db, "fit", "--bootstrap", "100", "--at", "1e21"])
    assert "web beats books at 1e+21 with P = " in text.output
    bad = run.invoke(cli, ["--db", db, "fit", "--at", "-1"])
    assert bad.exit_code == 2 and "--at must be a positive compute" in bad.output
    out = run.invoke(cli, ["--db", db, "predict", "--source", "web", "--compute", "1e21", "--json"])
    assert out.exit_code == 0, out.output
    p = json.loads(out.output)
    assert p["low"] < p["value"] < p["high"]
    assert abs(p["value"] - (2.0 + 10**-0.3)) < 0.05
    text = run.invoke(cli, ["--db", db, "predict", "--source", "web", "--compute", "1e21"])
    assert "90%" in text.output
    bad = run.invoke(cli, ["--db", db, "predict", "--source", "wbe", "--compute", "1e21"])
    assert bad.exit_code == 2 and "No fit for source 'wbe'" in bad.output
    bad = run.invoke(cli, ["--db", db, "fit", "--metric", "acc"])
    assert bad.exit_code == 2 and "No runs" in bad.output


def test_tables_written_to_a_pipe_keep_every_name_whole(tmp_path):
    # rich's default of 80 columns off a terminal cut these names to a few letters
    study, metric = "d=1024_l=24_h=8_long_study_name", "agi_eval_lsat_ar_long_metric_name"
    lines = ["study,source,compute,metric,value"]
    for name, a in (("c4_original_web_crawl", 1.0), ("refinedweb_original", 1.4)):
        for c in X:
            lines.append(f"{study},{name},{c},{metric},{0.3 + a * 0.01 * np.log10(c):.6f}")
    run, db = _imported(tmp_path, lines)
    for verb in (["fit", "--bootstrap", "20"], ["runs", "list"]):
        out = run.invoke(cli, ["--db", db, *verb])
        assert out.exit_code == 0, out.output
        for name in (study, "c4_original_web_crawl", "refinedweb_original"):
            assert name in out.stdout, (verb, out.stdout)
        assert "…" not in out.stdout
    assert metric in run.invoke(cli, ["--db", db, "fit", "--bootstrap", "20"]).stdout


def test_fit_predicts_an_accuracy_through_its_proxy(tmp_path):
    """``fit --proxy 'acc=loss'``: the accuracy is also predicted in two steps (the loss
    extrapolated, then mapped by a sigmoid floored at chance), inside [0, 1], with P(a
    beats b); a bad proxy is refused before anything is fitted."""
    rng = np.random.default_rng(0)
    lines = ["source,compute,metric,value,n_items,chance"]
    for name, shift in (("web", 0.0), ("books", 0.2), ("code", 0.4)):
        for c in X:
            loss = 3.5 - 0.3 * np.log10(c / X[0]) + shift
            p = 0.25 + 0.75 / (1 + np.exp(-(8.0 - 2.5 * loss)))
            lines.append(f"{name},{c},loss,{loss:.6f},,")
            lines.append(f"{name},{c},acc,{rng.binomial(2000, p) / 2000},2000,0.25")
    run, db = _imported(tmp_path, lines)
    bad = run.invoke(cli, ["--db", db, "fit", "--proxy", "acc=los"])
    assert bad.exit_code == 2 and "did you mean 'loss'" in bad.output
    assert "fits saved" not in bad.output
    fit = ["--db", db, "fit", "--bootstrap", "40", "--jobs", "1", "--proxy", "acc=loss"]
    out = run.invoke(cli, [*fit, "--metric", "acc", "--json"])
    assert out.exit_code == 0, out.output
    by = {f["source"]: f for f in json.loads(out.output)}
    web = by["web"]["proxy"]
    assert web["metric"] == "loss" and 0.25 <= web["low"] <= web["value"] <= web["high"] <= 1
    assert web["beats"]["code"] > 0.9  # web's loss is lowest: its accuracy the highest
    assert by["code"]["proxy"]["beats"]["web"] == pytest.approx(1.0 - web["beats"]["code"])
