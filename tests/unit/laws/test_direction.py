"""The check of each metric's direction against its data."""

from __future__ import annotations

import numpy as np

from planner.domain import Observation
from planner.laws.direction import direction_conflicts


def _obs(metric, slope, *, sources=8, noise=0.0, seed=0):
    rng = np.random.default_rng(seed)
    return [
        Observation("s", metric, f"src{k}", float(c), float(1.0 + slope * np.log(c) + noise * z))
        for k in range(sources)
        for c, z in zip(np.logspace(18, 20, 6), rng.standard_normal(6), strict=True)
    ]


def test_a_falling_metric_named_outside_the_rule_is_found():
    [c] = direction_conflicts(_obs("c4/bits_per_byte", -0.1))
    assert (c.metric, c.lower_is_better, c.against, c.clear) == ("c4/bits_per_byte", False, 8, 8)
    assert "--lower-is-better c4/bits_per_byte" in c.message()
    # a loss that rises is found the other way round
    [up] = direction_conflicts(_obs("val_loss", 0.1))
    assert "--higher-is-better val_loss" in up.message()


def test_no_conflict_when_the_data_agree_wander_or_the_user_said_so():
    assert direction_conflicts(_obs("c4/bits_per_byte", -0.1), {"c4/bits_per_byte": True}) == []
    assert direction_conflicts(_obs("arc/acc", 0.1) + _obs("val_loss", -0.1)) == []
    # a metric near chance: trends of both signs, and a handful of sources agreeing by luck
    # is not enough (a sign test at 1%)
    assert direction_conflicts(_obs("arc/acc", 0.0, noise=1.0, sources=40)) == []
    assert direction_conflicts(_obs("arc/acc", -0.1, sources=5)) == []


def test_import_and_backtest_warn_on_stderr(tmp_path):
    from click.testing import CliRunner

    from planner.cli import cli

    path = tmp_path / "runs.csv"
    rows = _obs("bits_per_byte", -0.1)
    path.write_text(
        "source,compute,metric,value\n"
        + "".join(f"{o.source},{o.compute},{o.metric},{o.value}\n" for o in rows)
    )
    db = str(tmp_path / "a.duckdb")
    out = CliRunner().invoke(cli, ["--db", db, "runs", "import", str(path), "--json"])
    assert out.exit_code == 0, out.output
    assert "warning: metric 'bits_per_byte' is taken as higher-is-better" in out.stderr
    assert '"runs_added": 48' in out.stdout
    told = ["--lower-is-better", "bits_per_byte"]
    quiet = CliRunner().invoke(cli, ["--db", db, "runs", "import", str(path), *told])
    assert quiet.exit_code == 0 and "warning" not in quiet.stderr
    # the store remembers the direction given: a later import without the flag is quiet too
    again = CliRunner().invoke(cli, ["--db", db, "runs", "import", str(path)])
    assert again.exit_code == 0 and "warning" not in again.stderr
    bt = CliRunner().invoke(cli, ["backtest", str(path), "--fraction", "0.5", "--json"])
    assert bt.exit_code == 0, bt.output
    assert "warning: metric 'bits_per_byte'" in bt.stderr
