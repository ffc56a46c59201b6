"""The difference model: levels from every point, trends shrunk by the table's prior."""

from __future__ import annotations

import math

import numpy as np
import pytest

from planner.laws.noise import SourcePoints
from planner.laws.pairwise import (
    NestedPairs,
    TrendPrior,
    difference_model,
    estimate_trend_prior,
    hold_out_largest,
    reduced_model,
)

X = 2.0 ** np.arange(6)  # six doublings of compute
SD = 0.01


def _group(rng, slope: float, floor: float = math.nan):
    """Three sources on a rising common curve; source s differs by s·slope per unit of
    log-compute (no level difference at the first compute), plus noise of known size."""
    common = 0.3 + 0.05 * np.log(X)
    points = {}
    for s in range(3):
        y = common + s * slope * np.log(X) + SD * rng.standard_normal(X.size)
        points[f"s{s}"] = SourcePoints(X, y, np.full(X.size, SD**2), np.ones(X.size))
    return points


def _nested(points, depth: int) -> NestedPairs:
    full = difference_model(points)
    model = reduced_model(points, full, depth)
    _, held = hold_out_largest(points, depth)
    names = model.sources
    pairs = ((0, 1), (0, 2), (1, 2))
    obs = np.array([held[names[a]][1] - held[names[b]][1] for a, b in pairs])
    level = float(np.mean([held[n][1] for n in names]))  # the common level is known here
    return NestedPairs(model, held[names[0]][0], level, 0.0, pairs, obs, np.full(3, 2 * SD**2))


def _table(slope: float, groups: int = 40, seed: int = 0):
    rng = np.random.default_rng(seed)
    data = [_group(rng, slope) for _ in range(groups)]
    cases = [_nested(p, d) for p in data for d in (1, 2)]
    return data, estimate_trend_prior(cases)


def _predicted_gap(points, prior: TrendPrior, compute: float, level: float) -> float:
    """The predicted difference between sources 2 and 0 at ``compute``."""
    model = difference_model(points)
    dev = model.deviations(compute, level, 0.0, prior.variances(model.scale))[0]
    return float(dev.mean[2] - dev.mean[0])


def test_shrinkage_recovers_zero_trend_on_pure_noise():
    """Sources that differ by nothing but noise: the table's prior keeps no trend, and a
    difference predicted 64× beyond the runs stays near zero instead of extrapolating a
    slope fitted to noise."""
    data, prior = _table(slope=0.0)
    assert prior.log_score >= prior.no_trend_log_score
    free = TrendPrior(10.0, 10.0)
    far = X[-1] * 64
    level = 0.3 + 0.05 * math.log(far)
    shrunk = [abs(_predicted_gap(p, prior, far, level)) for p in data]
    loose = [abs(_predicted_gap(p, free, far, level)) for p in data]
    assert np.mean(shrunk) < 0.5 * np.mean(loose)
    assert np.mean(shrunk) < 2 * SD


def test_shrinkage_keeps_a_real_trend():
    """Sources whose gap grows by 0.02 per unit of log-compute (four times the noise per
    doubling): the table's prior keeps the trend, and the gap predicted 64× beyond the runs
    is most of the true one (a prior of zero would predict the average gap of the runs)."""
    data, prior = _table(slope=0.01)
    assert prior.log_score > prior.no_trend_log_score + 0.05
    far = X[-1] * 64
    truth = 2 * 0.01 * math.log(far)
    level = 0.3 + 0.05 * math.log(far) + 0.01 * math.log(far)
    kept = np.mean([_predicted_gap(p, prior, far, level) for p in data])
    none = np.mean([_predicted_gap(p, TrendPrior(0.0, 0.0), far, level) for p in data])
    assert kept == pytest.approx(truth, rel=0.25)
    assert none < 0.6 * truth


def test_a_floor_holds_differences_at_zero_where_there_is_no_progress():
    """With an accuracy's chance level as the floor, sources differ in proportion to their
    common progress above it: at the floor the model predicts no difference."""
    rng = np.random.default_rng(3)
    points = _group(rng, slope=0.01)
    model = difference_model(points, floor=0.2)
    assert model.anchored
    dev = model.deviations(X[-1], 0.2, 0.0, TrendPrior(1.0, 0.0).variances(model.scale))[0]
    assert np.ptp(dev.mean) < 1e-6


def test_unknown_noise_is_estimated_from_the_residuals():
    rng = np.random.default_rng(4)
    points = {
        name: SourcePoints(p.x, p.y, np.full(p.x.size, np.nan), p.reps)
        for name, p in _group(rng, slope=0.0).items()
    }
    model = difference_model(points)
    assert not model.noise_known
    assert math.sqrt(model.noise_var) == pytest.approx(SD, rel=0.6)
    assert difference_model({"only": points["s0"]}) is None
