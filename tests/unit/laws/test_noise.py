"""Noise-aware fits: binomial and seed variances, inverse-variance weights, noise floors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from planner.domain import Observation
from planner.laws.joint import GroupData, fit_joint, group_observations
from planner.laws.noise import (
    GroupNoise,
    RunPoint,
    averaged,
    binomial_variance,
    group_noise,
    inverse_variance_weights,
)


def test_binomial_variance_of_proportions_only():
    assert binomial_variance(0.3, 100) == pytest.approx(0.3 * 0.7 / 100)
    # a measured 0 is kept half an item inside the bounds: its variance is not zero
    assert binomial_variance(0.0, 10) == pytest.approx(0.05 * 0.95 / 10)
    assert math.isnan(binomial_variance(3.2, 100))  # a loss is not a proportion
    assert math.isnan(binomial_variance(0.3, math.nan))  # no evaluation size


def test_seed_spread_pools_over_the_group_and_floors_at_binomial():
    pts = {
        "a": [
            RunPoint(1.0, 0.50, 1000, 0),
            RunPoint(1.0, 0.54, 1000, 1),
            RunPoint(2.0, 0.6, 1000, 0),
        ],
        "b": [RunPoint(1.0, 0.40, 1000, 0), RunPoint(1.0, 0.42, 1000, 1)],
    }
    noise = group_noise(pts)
    # (0.02² + 0.02²) + (0.01² + 0.01²) over 2 degrees of freedom
    assert noise.seed_var == pytest.approx((0.0008 + 0.0002) / 2)
    assert noise.seed_dof == 2 and noise.n_items == 1000
    a = averaged(pts["a"], noise)
    assert list(a.reps) == [2, 1]
    # the seed spread (5e-4) is larger than the binomial (2.5e-4): it is the run's variance
    assert a.var[0] == pytest.approx(5e-4 / 2)
    assert a.var[1] == pytest.approx(5e-4)
    quiet = GroupNoise(n_items=100, seed_var=1e-6)
    assert quiet.run_variance(0.5) == pytest.approx(0.25 / 100)  # never below the binomial


def test_weights_need_every_variance():
    w, unit = inverse_variance_weights(np.array([1.0, 4.0]))
    assert w == pytest.approx([1.6, 0.4]) and unit == pytest.approx(1 / 0.625)
    assert inverse_variance_weights(np.array([1.0, np.nan])) == (None, 0.0)


def test_a_noisy_point_counts_less_in_the_fit():
    """A point measured on few items is weighed by its larger variance: an outlier with
    100 times the variance barely moves the level, which it drags when weights are equal."""
    x = np.array([1.0, 2.0, 4.0, 8.0])
    data = {"a": (x, np.array([0.30, 0.30, 0.30, 0.50])), "b": (x, np.array([0.2] * 4))}
    var = {"a": np.array([1e-4, 1e-4, 1e-4, 1e-2]), "b": np.full(4, 1e-4)}
    plain = fit_joint(GroupData("s", "acc", False, data), candidates=["constant"], n_boot=0)
    weighed = fit_joint(GroupData("s", "acc", False, data, var), candidates=["constant"], n_boot=0)
    level = {f.source: f.params["c"] for f in weighed.fits}
    plain_level = {f.source: f.params["c"] for f in plain.fits}
    assert abs(level["a"] - 0.30) < 0.01 < abs(plain_level["a"] - 0.30)


def test_the_fit_noise_is_never_below_the_known_noise():
    """Points that happen to lie on the law do not make its noise zero: with known
    variances the fit's noise is at least theirs, so intervals include it."""
    x = np.array([1.0, 2.0, 4.0, 8.0, 16.0])
    y = 0.3 + 0.02 * np.log(x)
    var = {"a": np.full(5, 0.01**2)}
    res = fit_joint(
        GroupData("s", "acc", False, {"a": (x, y)}, var), candidates=["loglinear"], n_boot=50
    )
    [f] = res.fits
    assert f.noise_sd == pytest.approx(0.01, rel=1e-6)


def test_group_observations_carry_binomial_variances():
    obs = [
        Observation("s", "acc", src, c, v, n_items=400)
        for src in ("a", "b")
        for c, v in ((1.0, 0.3), (2.0, 0.35), (4.0, 0.4))
    ]
    [g] = group_observations(obs)
    assert g.var["a"] == pytest.approx([0.3 * 0.7 / 400, 0.35 * 0.65 / 400, 0.4 * 0.6 / 400])
    assert group_observations([Observation("s", "loss", "a", 1.0, 3.0)])[0].var is None


def test_seeds_whose_measured_curation_differs_a_little_are_one_budget():
    """A second seed of the same token budget measures a slightly different curation cost
    (a generator's FLOPs): its run still pools with the first as a seed of that budget."""
    pts = [
        RunPoint(1.0e-7, 0.20),
        RunPoint(1.31992e-6, 0.19),
        RunPoint(1.31955e-6, 0.21),  # 3e-4 apart: the same budget
    ]
    noise = group_noise({"synthetic": pts})
    assert noise.seed_dof == 1 and noise.seed_var == pytest.approx(0.0002)
    sp = averaged(pts, noise)
    assert sp.x.size == 2 and list(sp.reps) == [1.0, 2.0]
    assert sp.y[1] == pytest.approx(0.20)
    assert sp.x[1] == pytest.approx(1.319735e-6)
