"""P(in optimal plan) with the bootstrap rows recalibrated to the difference model."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from planner.allocate.pairwise_view import budget_pair_crossings, gain_shifts, p_in_optimal
from planner.allocate.plan import make_plan
from planner.allocate.solve import solve_rows
from planner.laws.pairwise import TrendPrior
from planner.laws.pairwise_view import PairwiseView

from ..design.sim import FeeCost, law, problem_with

BUDGET, SIGMA, BOOT, CONTROL = 2000.0, 0.004, 200, 0.38
TOKS = [1e8, 3e8, 1e9, 3e9]


def _problem():
    """Three sources, each with a fee so large that the budget buys only one: "a" and "b"
    measured alike (the laws' rows split between them), "worse" far below."""
    rng = np.random.default_rng(0)
    good = (0.56, 0.22, 0.30)
    data = {
        "a": (TOKS, [law(good, t) + SIGMA * rng.standard_normal() for t in TOKS]),
        "b": (TOKS, [law(good, t) + SIGMA * rng.standard_normal() for t in TOKS]),
        "worse": (TOKS, [law((0.45, 0.22, 0.30), t) + SIGMA * rng.standard_normal() for t in TOKS]),
    }
    costs = {k: FeeCost(1200.0, 1e-10) for k in data}
    return problem_with(data, SIGMA, CONTROL, rng, costs, n_boot=BOOT)


def _asked(problem, view):
    return dataclasses.replace(problem, p_in_optimal_from="difference", pairwise={"acc": view})


def _view(devs: dict[str, float], sd: float, draws: int = 400, seed: int = 1) -> PairwiseView:
    """A difference model that says each source deviates by ``devs`` (± sd), no trend."""
    names = tuple(devs)
    rng = np.random.default_rng(seed)
    level = np.array([devs[n] for n in names]) + sd * rng.standard_normal((draws, len(names)))
    zero = np.zeros_like(level)
    return PairwiseView(
        "s", "acc", names, 0.0, 0.0, level, zero, zero, (0.5, 0.0), TrendPrior(0.0, 0.0)
    )


def _p(problem) -> dict[str, float]:
    sample = np.arange(BOOT)
    bt = solve_rows(problem, np.full(BOOT, BUDGET), sample).sol.tokens
    return dict(zip(problem.names, p_in_optimal(problem, BUDGET, bt, sample), strict=True))


def test_by_default_the_rows_are_counted_as_solved_even_with_a_view():
    problem = _problem()
    sample = np.arange(BOOT)
    bt = solve_rows(problem, np.full(BOOT, BUDGET), sample).sol.tokens
    view = _view({"a": 0.02, "b": -0.02, "worse": -0.1}, 0.002)
    with_view = dataclasses.replace(problem, pairwise={"acc": view})
    assert with_view.p_in_optimal_from == "laws"
    np.testing.assert_array_equal(
        p_in_optimal(with_view, BUDGET, bt, sample), (bt > 0).mean(axis=0)
    )


def test_without_a_view_the_rows_are_counted_as_solved():
    problem = _problem()
    assert problem.pairwise == {}
    sample = np.arange(BOOT)
    bt = solve_rows(problem, np.full(BOOT, BUDGET), sample).sol.tokens
    assert gain_shifts(problem, BUDGET, sample) is None
    np.testing.assert_array_equal(p_in_optimal(problem, BUDGET, bt, sample), (bt > 0).mean(axis=0))
    assert budget_pair_crossings(problem, [BUDGET, 2 * BUDGET]) == []


def test_the_difference_model_moves_p_in_optimal_toward_the_source_it_prefers():
    problem = _problem()
    base = _p(problem)
    # the laws cannot tell a from b: their rows split between them
    assert 0.2 < base["a"] < 0.8 and 0.2 < base["b"] < 0.8
    for better, other in (("a", "b"), ("b", "a")):
        devs = {better: 0.02, other: -0.02, "worse": -0.1}
        p = _p(
            dataclasses.replace(
                problem, p_in_optimal_from="difference", pairwise={"acc": _view(devs, 0.002)}
            )
        )
        assert all(0.0 <= v <= 1.0 for v in p.values())
        assert p[better] > max(base[better], 0.95), (p, base)
        assert p[other] < min(base[other], 0.05), (p, base)
        assert p["worse"] <= base["worse"] + 0.01


def test_an_undecided_difference_model_keeps_the_split():
    problem = _problem()
    p = _p(
        dataclasses.replace(
            problem,
            p_in_optimal_from="difference",
            pairwise={"acc": _view({"a": 0, "b": 0, "worse": -0.1}, 0.01)},
        )
    )
    assert 0.25 < p["a"] < 0.75 and 0.25 < p["b"] < 0.75
    assert p["worse"] < 0.05


def test_make_plan_reports_the_recalibrated_probabilities():
    problem = dataclasses.replace(
        _problem(),
        p_in_optimal_from="difference",
        pairwise={"acc": _view({"a": 0.02, "b": -0.02, "worse": -0.1}, 0.002)},
    )
    plan = make_plan(problem, BUDGET, max_boot=BOOT)
    p = plan.uncertainty.p_in_optimal
    assert p["a"] > 0.95 and p["b"] < 0.05
    assert {a.source: a.p_in_optimal for a in plan.allocations} == pytest.approx(p)


def test_budget_pair_crossings_read_the_view_over_the_budgets_compute():
    # b gains on a with compute: the differences cross inside any range (no trend here,
    # so a level that straddles zero: half the draws cross nowhere, none anywhere)
    problem = dataclasses.replace(
        _problem(),
        p_in_optimal_from="difference",
        pairwise={"acc": _view({"a": 0.02, "b": -0.02, "worse": -0.1}, 0.002)},
    )
    rows = budget_pair_crossings(problem, [BUDGET, 10 * BUDGET])
    assert {(r.a, r.b) for r in rows} == {("a", "b"), ("a", "worse"), ("b", "worse")}
    for r in rows:
        assert r.probability == 0.0 and r.compute is None and r.low < r.high
        assert r.to_json()["unit"] == "tokens"


def test_beyond_three_sources_the_local_search_moves_p_the_same_way():
    """Four sources priced per token with small fees (a mix is optimal): the one the
    difference model puts far below the others leaves the rows' optima."""
    rng = np.random.default_rng(3)
    laws = {
        "a": (0.56, 0.22, 0.30),
        "b": (0.55, 0.22, 0.30),
        "c": (0.54, 0.20, 0.35),
        "d": (0.53, 0.22, 0.30),
    }
    data = {
        k: (TOKS, [law(p, t) + SIGMA * rng.standard_normal() for t in TOKS])
        for k, p in laws.items()
    }
    costs = {k: FeeCost(20.0 * (i + 1), 1e-8) for i, k in enumerate(laws)}
    problem = problem_with(data, SIGMA, CONTROL, rng, costs, n_boot=100)
    sample = np.arange(100)
    bt = solve_rows(problem, np.full(100, BUDGET), sample).sol.tokens
    base = (bt > 0).mean(axis=0)
    assert base[3] > 0.5  # the laws fund d in most rows
    view = _view({"a": 0.01, "b": 0.01, "c": 0.01, "d": -0.2}, 0.002)
    p = p_in_optimal(
        dataclasses.replace(problem, p_in_optimal_from="difference", pairwise={"acc": view}),
        BUDGET,
        bt,
        sample,
    )
    assert np.all((p >= 0) & (p <= 1))
    assert p[3] < base[3] - 0.3, (p, base)
