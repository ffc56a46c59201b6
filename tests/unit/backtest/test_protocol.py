"""The backtest protocol on small hand-made tables, the CLI, and the development data."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from planner.backtest import METHODS, available_cores, build_targets, run_backtest
from planner.backtest.protocol import Prediction, score_target, value_at
from planner.domain import Observation
from planner.errors import FitError

REPO = Path(__file__).resolve().parents[3]
DEV_DATA = REPO / ".." / "shared" / "data" / "overtraining-gadre2024"


def _obs(rows, metric="loss", study="s"):
    return [Observation(study, metric, src, float(c), float(v)) for src, c, v in rows]


# a: 5 runs up to 1000, b: runs up to 2000 (with two seeds at 10), c: too few small runs
ROWS = [
    ("a", 1, 5.0), ("a", 10, 4.0), ("a", 50, 3.6), ("a", 100, 3.5), ("a", 1000, 3.0),
    ("b", 1, 5.5), ("b", 10, 4.1), ("b", 10, 3.9), ("b", 30, 3.7), ("b", 100, 3.4),
    ("b", 2000, 2.8),
    ("c", 1, 6.0), ("c", 3000, 2.0),
]  # fmt: skip


def test_targets_follow_the_protocol():
    [t] = build_targets(_obs(ROWS), 0.1)
    assert t.x_target == 1000  # min over sources of each source's largest compute
    assert t.left_out == ("c",)  # fewer than 3 distinct computes <= 100
    assert set(t.fit_data) == {"a", "b"}
    assert t.actual["a"] == 3.0
    # b at 1000: between 100 (3.4) and 2000 (2.8), linear in log x
    expect = 3.4 + (2.8 - 3.4) * math.log(10) / math.log(20)
    assert t.actual["b"] == pytest.approx(expect)
    assert t.x_pe == 100
    assert t.point_estimate == {"a": 3.5, "b": 3.4}
    assert value_at(*t.fit_data["b"], 10) == pytest.approx(4.0)  # seeds averaged


def test_scoring_pairs_ties_and_are():
    [t] = build_targets(_obs(ROWS), 0.1)
    right = score_target(t, {"a": Prediction(3.1, 2.9, 3.2), "b": Prediction(2.9, 2.0, 2.5)})
    assert (right.pairs, right.correct, right.pe_correct) == (1, 1, 1)
    assert right.covered == 1 and right.intervals == 2
    wrong = score_target(t, {"a": Prediction(2.0), "b": Prediction(3.0)})
    assert wrong.correct == 0
    assert wrong.are == pytest.approx((1.0 / 3.0 + abs(3.0 - t.actual["b"]) / t.actual["b"]) / 2)
    tie = [("a", 1, 1), ("a", 2, 1), ("a", 3, 1), ("a", 40, 2), ("b", 1, 1), ("b", 2, 1),
           ("b", 3, 1), ("b", 40, 2)]  # fmt: skip
    [tt] = build_targets(_obs(tie, metric="acc"), 0.1)
    assert score_target(tt, {}).pairs == 0  # equal actual values are left out


def test_a_predicted_tie_is_half_a_pair_for_every_method():
    """A tie is a coin flip: half a pair ordered correctly, for a method and for the point
    estimate alike, and counted in ``ties``."""
    [t] = build_targets(_obs(ROWS), 0.1)
    tied = score_target(t, {"a": Prediction(3.0), "b": Prediction(3.0)})
    assert (tied.pairs, tied.correct, tied.ties) == (1, 0.5, 1)
    missing = score_target(t, {"a": Prediction(3.0)})
    assert (missing.correct, missing.ties) == (0, 0)  # no prediction is not a tie
    # the point estimate ties when its two values at x_PE are equal
    rows = [("a", 1, 0.3), ("a", 2, 0.3), ("a", 3, 0.4), ("a", 40, 0.5),
            ("b", 1, 0.3), ("b", 2, 0.3), ("b", 3, 0.4), ("b", 40, 0.6)]  # fmt: skip
    [pt] = build_targets(_obs(rows, metric="acc"), 0.1)
    pe = score_target(pt, {"a": Prediction(0.5), "b": Prediction(0.6)})
    assert (pe.pe_correct, pe.pe_ties, pe.correct, pe.ties) == (0.5, 1, 1, 0)
    res = run_backtest(_obs(rows, metric="acc"), method="point-estimate")
    assert res.point_estimate_decision_accuracy == 0.5 and res.point_estimate_ties == 1
    assert res.ties == 1 and res.as_dict()["ties"] == 1


def test_direction_does_not_break_accuracy():
    rows = [(s, c, v) for s, c, v in ROWS if s != "c"]
    acc = run_backtest(_obs(rows, metric="acc"), method="point-estimate")
    loss = run_backtest(_obs(rows, metric="loss"), method="point-estimate")
    assert acc.decision_accuracy == loss.decision_accuracy


def test_bad_inputs():
    with pytest.raises(FitError, match="fraction"):
        build_targets(_obs(ROWS), 0.0)
    with pytest.raises(FitError, match="No runs for metric"):
        build_targets(_obs(ROWS), 0.1, metrics=["bpb"])
    with pytest.raises(FitError, match="did you mean 'joint'"):
        run_backtest(_obs(ROWS), method="jont")
    with pytest.raises(FitError, match="Nothing to backtest"):
        run_backtest(_obs(ROWS[:3]), method="joint")
    with pytest.raises(FitError, match="--jobs"):
        run_backtest(_obs(ROWS), jobs=-1)


def test_worker_processes_give_the_same_result():
    """Groups spread over spawned worker processes score exactly as in one process, in
    the same order, and progress is reported once per group."""
    obs = [o for study in ("s1", "s2", "s3") for o in _obs(ROWS, study=study)]
    seen = []
    one = run_backtest(obs, jobs=1)
    two = run_backtest(obs, jobs=2, progress=lambda done, total: seen.append((done, total)))
    assert two.as_dict() == one.as_dict()
    assert [g.study for g in two.per_group] == ["s1", "s2", "s3"]
    assert seen == [(1, 3), (2, 3), (3, 3)]
    assert 1 <= available_cores() <= (os.cpu_count() or 1)


@pytest.mark.parametrize(
    "method", ["table", "difference", "joint", "independent", "point-estimate"]
)
def test_methods_run_on_a_small_table(method):
    res = run_backtest(_obs(ROWS), fraction=0.1, method=method)
    assert res.groups == 1 and res.pairs == 1
    assert set(METHODS) >= {"joint", "independent", "point-estimate"}


def test_cli_json_object(tmp_path):
    from planner.cli import cli

    path = tmp_path / "runs.csv"
    path.write_text(
        "source,compute,metric,value\n" + "".join(f"{s},{c},loss,{v}\n" for s, c, v in ROWS)
    )
    out = CliRunner().invoke(cli, ["backtest", str(path), "--json"])
    assert out.exit_code == 0, out.output
    d = json.loads(out.output)
    assert set(d) >= {
        "fraction", "method", "groups", "pairs", "ties", "decision_accuracy",
        "point_estimate_decision_accuracy", "mean_are", "point_estimate_mean_are",
        "interval_coverage", "brier", "calibration_error", "confident_share",
        "confident_accuracy", "per_group",
    }  # fmt: skip
    text = CliRunner().invoke(cli, ["backtest", str(path)])
    assert "decision accuracy" in text.output
    bad = CliRunner().invoke(cli, ["backtest", str(path), "--method", "nope"])
    assert bad.exit_code == 2 and "unknown backtest method" in bad.output
    # a bad proxy is one clear error before any fit: a proxy the runs do not have, a
    # metric that would stand in for itself
    for spec, needle in (
        ("acc=los", "no metric 'los'; did you mean 'loss'"),
        ("loss=loss", "circular"),
    ):
        bad = CliRunner().invoke(cli, ["backtest", str(path), "--proxy", spec])
        assert bad.exit_code == 2 and needle in bad.output, bad.output
    serial = CliRunner().invoke(cli, ["backtest", str(path), "--json", "--jobs", "1"])
    assert json.loads(serial.output) == d
    # the project file's proxy setting is read when no --proxy is given
    project = tmp_path / "project"
    project.mkdir()
    (project / "annealplan.toml").write_text('proxy = ["acc=los"]\n')
    bad = CliRunner().invoke(cli, ["--project", str(project), "backtest", str(path)])
    assert bad.exit_code == 2 and "did you mean 'loss'" in bad.output, bad.output
    # a column outside the format is left unread, said on stderr; stdout stays the JSON
    extra = tmp_path / "extra.csv"
    extra.write_text(
        "source,compute,metric,value,recipe\n"
        + "".join(f"{s},{c},loss,{v},r-{s}\n" for s, c, v in ROWS)
    )
    noted = CliRunner().invoke(cli, ["backtest", str(extra), "--json"])
    assert noted.exit_code == 0, noted.output
    assert json.loads(noted.stdout) == d
    assert "ignoring column(s) recipe" in noted.stderr


@pytest.mark.slow
def test_development_data_backtest(tmp_path):
    """Gadre et al. (2024), read as the example's README reads it (the converter's runs
    table, with its n_items and chance columns): measured figures of the default method at F = 0.1.

    The issue's goal (+3 points over the point estimate at F = 0.1) is NOT reached on this
    data (see the example's README for the figures); the assertions pin what is reached:
    not below the point estimate on decisions (a tie half a pair), and 90% intervals
    covering 80–95% of targets. The groups are spread over the machine's cores.
    """
    if not (DEV_DATA / "runs_flat.csv").exists():
        pytest.skip("the development data (../shared/data/overtraining-gadre2024) is absent")
    import importlib.util

    from planner.store.runs_table import read_runs_table

    spec = importlib.util.spec_from_file_location("convert", REPO / "examples/gadre2024/convert.py")
    convert = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(convert)
    table = tmp_path / "gadre2024_runs.csv"
    assert convert.main([str(table), "--data", str(DEV_DATA)]) == 0
    obs = read_runs_table(table).observations()
    assert any(o.n_items for o in obs) and any(o.chance for o in obs)
    # the headline fraction; F = 0.25 is in the example's README, measured with
    # ``annealplan backtest`` (one fraction here keeps the suite's time down)
    res = run_backtest(obs, fraction=0.1, jobs=0)
    assert res.groups == 216 and res.pairs == 605
    assert res.decision_accuracy >= res.point_estimate_decision_accuracy
    assert 0.80 <= res.interval_coverage <= 0.95


@pytest.mark.slow
def test_a_proxy_is_one_more_candidate_of_the_table():
    """An accuracy with a continuous proxy (here the log-odds the accuracy is drawn from):
    the two-step prediction joins the table's candidates, every pair is predicted, and
    the figures stay honest (the proxy's runs are read for the accuracy, not scored)."""
    from planner.backtest.synthetic import synthetic_table

    obs = synthetic_table("emerging", groups=2, seed=1)
    latent = [
        Observation(o.study, "logodds", o.source, o.compute, float(np.log(o.value / (1 - o.value))))
        for o in obs
        if 0 < o.value < 1
    ]
    res = run_backtest(
        obs + latent, fraction=0.25, method="table", metrics=["acc"], proxies={"acc": "logodds"}
    )
    assert res.groups == 2 and {g.metric for g in res.per_group} == {"acc"}
    assert res.calibration.pairs == res.pairs
    assert "proxy" in res.notes["held_out_log_score"]
