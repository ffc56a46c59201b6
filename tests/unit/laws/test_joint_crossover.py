"""Joint fits across sources, leave-last-out selection, and crossovers."""

from __future__ import annotations

import numpy as np
import pytest

from planner.domain import Observation
from planner.errors import FitError
from planner.laws.crossover import crossover
from planner.laws.families import compiled
from planner.laws.fit import fit_law
from planner.laws.joint import (
    GroupData,
    build_problem,
    fit_independent,
    fit_joint,
    group_observations,
    parse_candidate,
)
from planner.laws.predict import predict

X = np.logspace(18, 20, 5)


def _group(noise=0.005, seed=0):
    rng = np.random.default_rng(seed)
    xs = X / X.max()
    data = {
        name: (X, 2.0 + a * xs**-0.3 + rng.normal(0, noise, X.size))
        for name, a in (("web", 1.0), ("books", 1.4), ("code", 0.8))
    }
    return GroupData("s", "loss", True, data)


def test_joint_shared_exponent_recovered():
    res = fit_joint(_group(), candidates=["power[E,alpha]"], n_boot=50)
    fits = {f.source: f for f in res.fits}
    assert all(f.success for f in fits.values())
    assert fits["web"].params["alpha"] == pytest.approx(0.3, abs=0.05)
    assert fits["web"].params["alpha"] == fits["code"].params["alpha"]  # shared
    assert fits["books"].params["A"] > fits["web"].params["A"] > fits["code"].params["A"]
    assert fits["web"].boot.shape == (50, 3)


@pytest.mark.parametrize("candidate", ["power[E,alpha]", "power[E]", "loglinear[b]", "constant"])
def test_joint_normal_equations_summed_without_the_dense_jacobian(candidate):
    """The joint solver sums JᵀWJ and JᵀWr from per-point derivatives; the LM step it
    takes equals the one from the dense (B, n, P) Jacobian."""
    problem = build_problem(parse_candidate(candidate), _group().data, lower_is_better=True)
    rng = np.random.default_rng(1)
    B, P = 7, problem.n_params
    theta = np.clip(rng.uniform(0.2, 2.0, (B, P)), problem.lo, problem.hi)
    J = problem.jac(theta)  # (B, n, P)
    r = rng.standard_normal((B, problem.n))
    w = rng.uniform(0.5, 1.5, (B, problem.n))
    lam = rng.uniform(1e-3, 1.0, B)
    A = np.einsum("bnp,bn,bnq->bpq", J, w, J)
    g = np.einsum("bnp,bn,bn->bp", J, w, r)
    A[:, np.arange(P), np.arange(P)] *= 1 + lam[:, None]
    dense = -np.linalg.solve(A + 1e-12 * lam[:, None, None] * np.eye(P), g[..., None])[..., 0]
    per_point = compiled(problem.family).jac(list(problem.X), problem.point_params(theta))
    grads = np.stack([np.broadcast_to(v, (B, problem.n)) for v in per_point])  # (p, B, n)
    summed = problem.sums.step(grads, r, w, lam)
    np.testing.assert_allclose(summed, dense, rtol=1e-8, atol=1e-10)


def test_a_perplexity_gets_the_exponential_forms_by_default():
    rng = np.random.default_rng(2)
    xs = X / X.max()
    data = {
        name: (X, np.exp(2.0 + a * xs**-0.3 + rng.normal(0, 0.003, X.size)))
        for name, a in (("web", 1.0), ("books", 1.4), ("code", 0.8))
    }
    res = fit_joint(GroupData("s", "val_ppl", True, data), n_boot=0)
    assert set(res.scores) == {"constant", "loglinear[b]", "exppower[E,alpha]", "exppower[E]"}
    assert res.candidate.family == "exppower"
    # the same values under a loss's name get the power law; a perplexity column with a
    # value <= 0 (not a perplexity after all) too
    assert "power[E,alpha]" in fit_joint(GroupData("s", "loss", True, data), n_boot=0).scores
    data["web"] = (X, np.r_[0.0, data["web"][1][1:]])
    assert "power[E]" in fit_joint(GroupData("s", "val_ppl", True, data), n_boot=0).scores


def test_selection_by_leave_last_out_and_fallback():
    res = fit_joint(_group(), n_boot=0)
    assert set(res.scores) >= {"loglinear[b]", "power[E,alpha]"}
    assert res.candidate.name == min(res.scores, key=res.scores.get)
    # two points per source: only the shared-slope line is feasible
    short = GroupData("s", "loss", True, {k: (x[:2], y[:2]) for k, (x, y) in _group().data.items()})
    res = fit_joint(short, n_boot=0)
    assert res.candidate.name == "loglinear[b]"
    one = GroupData("s", "loss", True, {"a": (X[:1], np.array([1.0]))})
    assert not fit_joint(one, n_boot=0).fits[0].success


def test_independent_fits_and_grouping():
    obs = [
        Observation("s", "loss", src, float(x), float(y))
        for src, (xs, ys) in _group().data.items()
        for x, y in zip(xs, ys, strict=True)
    ]
    [g] = group_observations(obs)
    assert g.lower_is_better and set(g.sources) == {"web", "books", "code"}
    fits = fit_independent(g, family="power", n_boot=0)
    assert [f.method for f in fits] == ["independent"] * 3


def test_a_mixed_run_is_no_source_to_fit():
    obs = [
        Observation("s", "loss", src, float(x), float(y))
        for src, (xs, ys) in _group().data.items()
        for x, y in zip(xs, ys, strict=True)
    ]
    mixed = [
        Observation("s", "loss", "web@0.6+books@0.4", 1e19, 2.1),
        Observation("s", "loss", "web+code", 2e19, 2.0),
    ]
    [g] = group_observations(obs + mixed)
    assert set(g.sources) == {"web", "books", "code"}
    assert group_observations(mixed) == []


def test_bad_candidates():
    with pytest.raises(FitError, match="no parameter"):
        parse_candidate("power[beta]")
    with pytest.raises(FitError, match="unknown law family"):
        parse_candidate("powerlaw")
    with pytest.raises(FitError, match="No runs"):
        fit_joint(GroupData("s", "m", True, {}))


def test_crossover_of_known_crossing_curves():
    # a: 1 + 2·x^-0.5 ; b: 1.5 + 1·x^-0.2, crossing where 2x^-0.5 - x^-0.2 = 0.5
    x = np.logspace(0, 2, 8)
    rng = np.random.default_rng(1)
    ya = 1.0 + 2.0 * (x / 100) ** -0.5 + rng.normal(0, 1e-4, x.size)
    yb = 1.5 + 1.0 * (x / 100) ** -0.2 + rng.normal(0, 1e-4, x.size)
    fa = fit_law("power", x, ya, lower_is_better=True, source="a", n_boot=200)
    fb = fit_law("power", x, yb, lower_is_better=True, source="b", n_boot=200)
    c = crossover(fa, fb, 1.0, 1e4)
    from scipy.optimize import brentq

    truth = brentq(lambda v: 2 * (v / 100) ** -0.5 - (v / 100) ** -0.2 - 0.5, 1, 1e4)
    assert c.compute == pytest.approx(truth, rel=0.02)
    assert float(predict(fa, [c.compute])[0]) == pytest.approx(float(predict(fb, [c.compute])[0]))
    assert c.probability > 0.95
    lo, _mid, hi = c.quantiles()
    assert lo <= truth * 1.05 and hi >= truth * 0.95
    assert c.better_after == "a"  # a decreases faster: lower (better) after the crossing
    none = crossover(fa, fb, 400.0, 1e4)
    assert np.isnan(none.compute) and none.probability < 0.05
    with pytest.raises(FitError, match="0 < low < high"):
        crossover(fa, fb, 10.0, 1.0)


def test_constant_family_meets_the_allocator_contract():
    """Evaluating expr at x = compute/x_ref gives the level; its slope in compute is 0."""
    import sympy

    from planner.laws.families import get_family, law_function

    rng = np.random.default_rng(11)
    y = 0.26 + rng.normal(0, 0.01, X.size)
    fit = fit_law("constant", X, y, n_boot=100)
    assert fit.success and fit.params["c"] == pytest.approx(np.mean(y), abs=0.01)
    expr, xs, params = law_function(get_family("constant"))
    assert sympy.diff(expr, xs) == 0
    value = float(expr.subs({p: fit.params[p.name] for p in params}).subs(xs, 3.0))
    assert value == pytest.approx(float(predict(fit, [3.0 * fit.x_ref])[0]))
    assert predict(fit, X).shape == X.shape  # one value per compute, like any law


def test_flat_noisy_series_weigh_the_constant_and_averaging_is_consistent():
    from planner.laws.joint import llo_weights
    from planner.laws.predict import predict_boot, predict_interval

    rng = np.random.default_rng(12)
    x = np.logspace(18, 19, 4)
    data = {s: (x, lvl + rng.normal(0, 0.01, x.size)) for s, lvl in (("a", 0.25), ("b", 0.27))}
    res = fit_joint(GroupData("s", "acc", False, data), n_boot=200)
    f = res.fits[0]
    weights = f.average.weights if f.average else {f.candidate: 1.0}
    assert sum(weights.values()) == pytest.approx(1.0)
    assert "constant" in weights
    # the averaged prediction is the weighted mean of the members' predictions
    point = float(predict(f, [1e20])[0])
    assert 0.2 < point < 0.32
    _, low, high = predict_interval(f, [1e20])
    assert low[0] < point < high[0]
    assert predict_boot(f, [1e19, 1e20]).shape == (200, 2)
    # selection keeps one law
    single = fit_joint(GroupData("s", "acc", False, data), n_boot=0, average=False)
    assert single.fits[0].average is None
    # weights: an exact extrapolation takes everything; equal errors share equally
    assert llo_weights({"a": np.zeros(3), "b": np.ones(3)}) == {"a": 1.0, "b": 0.0}
    w = llo_weights({"a": np.array([0.1, -0.1]), "b": np.array([-0.1, 0.1])})
    assert w["a"] == pytest.approx(0.5)
