"""The difference model's pairwise view: crossings read from its posterior draws."""

from __future__ import annotations

import numpy as np

from planner.backtest.synthetic import synthetic_table
from planner.laws.crossover import crossover
from planner.laws.joint import GroupData, fit_joint
from planner.laws.noise import SourcePoints
from planner.laws.pairwise_view import (
    Group,
    groups_from_observations,
    pair_crossing,
    pairwise_views,
    study_views,
)

X = 2.0 ** np.arange(6)  # six doublings of compute
SD = 0.01


def _table(slope: float, offset: float, groups: int = 30, seed: int = 0) -> list[Group]:
    """Groups of two sources on a rising common curve: b starts ``offset`` below a and
    gains ``slope`` more per unit of log-compute, with noise of known size."""
    rng = np.random.default_rng(seed)
    out = []
    for g in range(groups):
        common = 0.3 + 0.05 * np.log(X)
        ya = common + SD * rng.standard_normal(X.size)
        yb = common - offset + slope * np.log(X) + SD * rng.standard_normal(X.size)
        var = np.full(X.size, SD**2)
        points = {
            "a": SourcePoints(X, ya, var, np.ones(X.size)),
            "b": SourcePoints(X, yb, var, np.ones(X.size)),
        }
        out.append(Group(f"g{g}", "acc", points))
    return out


def test_no_crossing_where_sources_differ_by_a_level_and_noise():
    views = pairwise_views(_table(slope=0.0, offset=0.03))
    p = [pair_crossing(v, "a", "b", 1.0, 2.0**9).probability for v in views.values()]
    assert len(p) == 30
    assert max(p) <= 0.1, p
    assert float(np.mean(p)) < 0.02


def test_a_real_crossing_trend_is_found_where_it_is():
    # b gains 0.02 per unit of log-compute from 0.05 below: they cross at log x = 2.5,
    # inside the ladder, so the nested backtests see the ranking change
    groups = _table(slope=0.02, offset=0.05)
    views = pairwise_views(groups)
    assert next(iter(views.values())).prior.k_log > 0  # the nested backtests keep the trend
    cs = [pair_crossing(v, "a", "b", 1.0, 2.0**12) for v in views.values()]
    p = np.array([c.probability for c in cs])
    assert float(np.mean(p)) > 0.8, p
    at = np.log([c.compute for c in cs if np.isfinite(c.compute)])
    assert at.size >= 0.8 * len(cs)
    assert abs(float(np.median(at)) - 2.5) < 0.5
    # after the crossing b is ahead
    assert all(c.a_ahead_after < 0.5 for c in cs if c.probability > 0.5)


def test_crossover_reports_the_difference_model_beside_the_joint_laws():
    obs = synthetic_table("shared", groups=8, sources=3, seed=1)
    fits = []
    for g in groups_from_observations(obs):
        data = {s: (p.x, p.y) for s, p in g.points.items()}
        fits += fit_joint(GroupData(g.study, g.metric, True, data, None), n_boot=50).fits
    views = study_views(obs, fits)
    by = {(f.study, f.source): f for f in fits}
    shown = []
    for (study, _metric), view in views.items():
        c = crossover(by[(study, "s0")], by[(study, "s1")], 1e18, 1e18 * 2**11, view=view)
        assert 0.0 <= c.difference_probability <= 1.0
        assert c.method == "difference"
        assert c.shown_probability == c.difference_probability
        assert np.all((c.difference_samples >= 1e18) & (c.difference_samples <= 1e18 * 2**11))
        shown.append(c.shown_probability)
    # a shared exponent: the curves converge and never cross
    assert float(np.median(shown)) < 0.1, shown
    # without a view the joint laws' estimate is the one shown, as before
    c = crossover(by[("g0", "s0")], by[("g0", "s1")], 1e18, 1e18 * 2**11)
    assert c.method == "joint" and np.isnan(c.difference_probability)
    assert c.shown_probability == c.probability


def test_groups_leave_out_the_control_mixtures_and_thin_sources():
    from planner.domain import Observation

    rows = [("a", 1.0, 0.3), ("a", 2.0, 0.35), ("b", 1.0, 0.2), ("b", 2.0, 0.3)]
    rows += [("control", 1.0, 0.1), ("control", 2.0, 0.1), ("a+b", 2.0, 0.4), ("c", 1.0, 0.2)]
    obs = [Observation("s", "acc", src, x, y, seed=0, chance=0.25) for src, x, y in rows]
    obs.append(Observation("s", "loss", "a", 1.0, 3.0))  # one source: no pairs, no group
    [g] = groups_from_observations(obs)
    assert (g.study, g.metric) == ("s", "acc") and set(g.points) == {"a", "b"}
    assert g.chance == 0.25
