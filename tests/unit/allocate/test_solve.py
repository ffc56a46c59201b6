from __future__ import annotations

import numpy as np
import pytest
import sympy

from planner.allocate.model import N_TOKENS as n
from planner.allocate.model import make_curve
from planner.allocate.reference import slsqp
from planner.allocate.solve import Batch, solve_batch


def _solve(curves, budget):
    batch = Batch(curves, [c.theta[None] for c in curves], np.array([float(budget)]))
    return batch, solve_batch(batch)


def _sqrt_curves(a, c, caps=None):
    A = sympy.Symbol("a", positive=True)
    caps = caps or [None] * len(a)
    return [
        make_curve(f"s{i}", A * sympy.sqrt(n), sympy.Float(ci) * n, {A: ai}, cap_tokens=cap)
        for i, (ai, ci, cap) in enumerate(zip(a, c, caps, strict=True))
    ]


def test_closed_form_optimum_of_square_root_gains():
    a, c, budget = np.array([1.0, 2.0, 0.5]), np.array([1e-6, 3e-6, 0.5e-6]), 100.0
    _, sol = _solve(_sqrt_curves(a, c), budget)
    # MU = a / (2 c sqrt(D)) = λ for all sources → D_i = a_i² B / (c_i² Σ a_j²/c_j)
    expected = a**2 * budget / (c**2 * np.sum(a**2 / c))
    np.testing.assert_allclose(sol.tokens[0], expected, rtol=1e-9)
    assert sol.spent[0] == pytest.approx(budget, rel=1e-9)


def test_a_binding_cap_is_respected_and_the_rest_reoptimised():
    a, c, budget = np.array([1.0, 2.0]), np.array([1e-6, 1e-6]), 100.0
    free = a**2 * budget / (c**2 * np.sum(a**2 / c))
    cap = free[1] / 4
    _, sol = _solve(_sqrt_curves(a, c, caps=[None, cap]), budget)
    assert sol.tokens[0, 1] == pytest.approx(cap, rel=1e-12)
    assert sol.tokens[0, 0] == pytest.approx((budget - c[1] * cap) / c[0], rel=1e-9)


def test_all_caps_bind_and_the_budget_is_left_over():
    a, c = np.array([1.0, 2.0]), np.array([1e-6, 1e-6])
    _, sol = _solve(_sqrt_curves(a, c, caps=[1e6, 2e6]), 1e6)
    np.testing.assert_allclose(sol.tokens[0], [1e6, 2e6])
    assert sol.lam[0] == 0.0


def _offset_power_instance(rng, k):
    a, d0, al = sympy.symbols("a d0 alpha", positive=True)
    g = a * (1 - (1 + n / d0) ** (-al))
    return [
        make_curve(
            f"s{i}",
            g,
            sympy.Float(rng.uniform(0.5, 3) * 1e-6) * n,
            {a: rng.uniform(0.2, 2), d0: 10 ** rng.uniform(5, 7), al: rng.uniform(0.2, 0.9)},
            cap_tokens=10 ** rng.uniform(6, 8) if rng.random() < 0.4 else None,
        )
        for i in range(k)
    ]


@pytest.mark.parametrize("seed", range(8))
def test_agrees_with_slsqp_on_random_concave_instances(seed):
    rng = np.random.default_rng(seed)
    curves = _offset_power_instance(rng, int(rng.integers(2, 9)))
    budget = 10 ** rng.uniform(0, 2.5)
    _, sol = _solve(curves, budget)
    _, ref, ok = slsqp(curves, budget, ftol=1e-12)
    assert ok
    assert abs(sol.total[0] - ref) <= 1e-6 * abs(ref)
    assert sol.spent[0] <= budget * (1 + 1e-9)


def test_closed_form_inverse_is_found_and_used_for_power_laws():
    rng = np.random.default_rng(1)
    curves = _offset_power_instance(rng, 3)
    assert curves[0].template.mu_inv_candidates
    batch, _ = _solve(curves, 10.0)
    assert list(batch._inv_ok.values()) == [0]


def test_marginal_utility_matches_finite_differences():
    rng = np.random.default_rng(2)
    # a fixed cost and a convex cost term, so MU is not just gain'
    a, d0, al = sympy.symbols("a d0 alpha", positive=True)
    g = a * (1 - (1 + n / d0) ** (-al))
    cost = sympy.Float(2e-6) * n + sympy.Float(1e-16) * n**2 + sympy.Float(5.0)
    c = make_curve("s", g, cost, {a: 1.3, d0: 3e6, al: 0.4})
    for d in 10 ** rng.uniform(5, 8, size=10):
        h = d * 1e-6
        fd = (c.template.gain(d + h, *c.theta) - c.template.gain(d - h, *c.theta)) / (
            c.template.cost(d + h, *c.theta) - c.template.cost(d - h, *c.theta)
        )
        assert c.mu(d) == pytest.approx(fd, rel=1e-6)


def _logistic_curve(name, lo, hi, k, m, price):
    L, H, K, M = sympy.symbols("L H K M", real=True)
    g = (H - L) / (1 + sympy.exp(-K * (sympy.log(n / 1e8) - M)))
    return make_curve(name, g, sympy.Float(price) * n, {L: lo, H: hi, K: k, M: m})


def _grid_best(curves, budget, price, points=20001):
    # two sources with linear costs: every split of the budget on a fine grid
    share = np.linspace(0.0, 1.0, points)
    ga = curves[0].gain(share * budget / price)
    gb = curves[1].gain((1 - share) * budget / price)
    return float(np.max(ga + gb))


@pytest.mark.parametrize("budget", [50.0, 400.0, 3000.0])
def test_logistic_laws_reach_the_grid_optimum(budget):
    # steep sigmoids (k > 1) are convex at small budgets: all-or-nothing decisions
    curves = [
        _logistic_curve("a", 0.0, 0.2, 3.0, 2.0, 1e-6),
        _logistic_curve("b", 0.0, 0.35, 2.5, 3.5, 1e-6),
    ]
    _, sol = _solve(curves, budget)
    ref = _grid_best(curves, budget, 1e-6)
    assert sol.total[0] >= ref - 1e-4 * max(abs(ref), 1e-9)
    assert sol.spent[0] <= budget * (1 + 1e-9)


def test_logistic_uses_numeric_inversion():
    c = _logistic_curve("a", 0.0, 0.2, 3.0, 2.0, 1e-6)
    batch, _ = _solve([c], 100.0)
    assert list(batch._inv_ok.values()) == [None]


def test_vectorised_rows_match_one_by_one():
    rng = np.random.default_rng(3)
    curves = _offset_power_instance(rng, 4)
    budgets = np.geomspace(1.0, 300.0, 7)
    batch = Batch(curves, [np.broadcast_to(c.theta, (7, c.theta.size)) for c in curves], budgets)
    together = solve_batch(batch).total
    alone = [_solve(curves, b)[1].total[0] for b in budgets]
    np.testing.assert_allclose(together, alone, rtol=1e-10)


def test_fixed_cost_above_budget_is_infeasible_not_an_error():
    A = sympy.Symbol("a", positive=True)
    c = make_curve("s", A * sympy.sqrt(n), sympy.Float(1e-6) * n + sympy.Float(50.0), {A: 1.0})
    _, sol = _solve([c], 10.0)
    assert not sol.feasible[0]
    assert sol.total[0] == 0.0


def test_fixed_costs_choose_the_better_single_source():
    # each source pays a fixed cost; the budget only affords one of them well
    A = sympy.Symbol("a", positive=True)
    curves = [
        make_curve("s0", A * sympy.sqrt(n), sympy.Float(1e-6) * n + sympy.Float(60.0), {A: 1.0}),
        make_curve("s1", A * sympy.sqrt(n), sympy.Float(1e-6) * n + sympy.Float(60.0), {A: 1.2}),
    ]
    _, sol = _solve(curves, 100.0)
    assert sol.tokens[0, 0] == 0.0
    assert sol.tokens[0, 1] == pytest.approx(40e6, rel=1e-6)


def test_less_than_one_token_is_not_bought():
    # the water-filling optimum gives each source 0.05 tokens: no purchase at all
    _, sol = _solve(_sqrt_curves(np.array([1.0, 1.0]), np.array([1e-6, 1e-6])), 1e-7)
    assert sol.tokens[0].tolist() == [0.0, 0.0]
    assert sol.total[0] == 0.0 and sol.spent[0] == 0.0
    # one source at a quarter of a token is dropped; the other keeps its share
    a, c, budget = np.array([1.0, 5e-5]), np.array([1e-6, 1e-6]), 100.0
    expected = a**2 * budget / (c**2 * np.sum(a**2 / c))
    assert expected[1] < 1.0
    _, sol = _solve(_sqrt_curves(a, c), budget)
    assert sol.tokens[0, 1] == 0.0 and sol.gain[0, 1] == 0.0
    assert sol.tokens[0, 0] == pytest.approx(expected[0], rel=1e-9)
