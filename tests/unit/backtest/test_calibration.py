"""Scoring stated probabilities, and the table method's calibration where truth is known."""

from __future__ import annotations

import math

import numpy as np
import pytest

from planner.backtest import run_backtest
from planner.backtest.calibration import calibration
from planner.backtest.synthetic import KINDS, synthetic_table


def test_scores_of_stated_probabilities():
    right = calibration([1.0, 0.0, 1.0], [1, 0, 1])
    assert right.brier == 0 and right.calibration_error == 0
    assert right.confident_share == 1 and right.confident_accuracy == 1
    rng = np.random.default_rng(0)
    p = rng.uniform(0, 1, 20000)
    honest = calibration(p, rng.uniform(0, 1, p.size) < p)
    assert honest.calibration_error < 0.02
    # always 0.9 sure, right half the time: off by 0.4 in the one bin it uses
    sure = calibration([0.9] * 10, [1, 0] * 5)
    assert sure.calibration_error == pytest.approx(0.4)
    assert sure.confident_accuracy == 0.5
    assert math.isnan(calibration([], []).brier)


def test_synthetic_tables_have_their_columns():
    acc = synthetic_table("emerging", groups=2, seed=0)
    assert {o.metric for o in acc} == {"acc"} and all(o.n_items and o.chance for o in acc)
    assert all(0 <= o.value <= 1 for o in acc)
    assert set(KINDS) == {"shared", "crossing", "two-term", "emerging"}
    with pytest.raises(ValueError, match="unknown synthetic kind"):
        synthetic_table("nope")


@pytest.mark.slow
def test_the_tables_probabilities_are_calibrated_where_truth_is_known():
    """Sources whose curves may cross: the table's P(a beats b) is calibrated. Over 90
    pairs sampling alone gives an expected calibration error near 0.05 (0.04–0.09 on four
    draws of this table); a P of 0.5 everywhere would be off by about 0.4 in its bin, and
    always 0.95 sure by about 0.1. Its Brier score is far from an uninformed 0.25."""
    obs = synthetic_table("crossing", groups=15, seed=5)
    res = run_backtest(obs, fraction=0.25, method="table", jobs=1)
    assert res.calibration.pairs == res.pairs == 90
    assert res.calibration.calibration_error < 0.12
    assert res.calibration.brier < 0.15
    assert 0.8 <= res.interval_coverage <= 1.0
