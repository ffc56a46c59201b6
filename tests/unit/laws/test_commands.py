"""``annealplan fit`` and ``annealplan predict`` on an imported runs table."""

from __future__ import annotations

import json

import numpy as np
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
