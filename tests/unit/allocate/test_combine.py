from __future__ import annotations

import numpy as np
import pytest
import sympy
from scipy import optimize

from planner.allocate.combine import (
    CombinationRule,
    additive_rule,
    fit_interaction,
    rule_expressions,
)
from planner.allocate.problem import Control, CostSetup, SourceInput, build_problem
from planner.allocate.solve import combined_mu, evaluate_plan, solve_combined
from planner.allocate.testing import families, make_fit, saturating_power
from planner.units import Unit

P = saturating_power()


def test_coverage_rule_against_a_hand_computed_case():
    rule = CombinationRule(headroom=0.5)
    # 0.5·(1 − (1 − 0.1/0.5)(1 − 0.2/0.5)) = 0.5·(1 − 0.8·0.6) = 0.26
    assert rule.combine(np.array([0.1, 0.2])) == pytest.approx(0.26, abs=1e-12)
    assert additive_rule().combine(np.array([0.1, 0.2])) == pytest.approx(0.3)
    # one source alone keeps its own gain, for any interaction
    for theta in (0.0, 2.0, -0.5):
        assert rule.with_theta(theta).combine(np.array([0.2, 0.0, 0.0])) == pytest.approx(0.2)
    # never above the headroom, even when each law runs past the metric's bound
    assert rule.combine(np.array([0.49, 0.7, 3.0])) <= 0.5
    # the small-gain limit is the sum
    assert rule.combine(np.array([1e-6, 2e-6])) == pytest.approx(3e-6, rel=1e-5)


def test_interaction_orders_the_gain_and_tends_to_the_independent_rule():
    g = np.array([0.1, 0.15, 0.05])
    rule = CombinationRule(headroom=0.6)
    ind = rule.combine(g)
    assert rule.with_theta(3.0).combine(g) < ind < rule.with_theta(-0.5).combine(g)
    assert rule.with_theta(1e-4).combine(g) == pytest.approx(ind, rel=1e-4)


@pytest.mark.parametrize("theta", [0.0, 1.5, -0.4])
def test_sympy_gradient_matches_finite_differences(theta):
    rule = CombinationRule(headroom=0.7, theta=theta)
    g = np.array([[0.05, 0.2, 0.1], [0.3, 0.01, 0.0]])
    grad = rule.gradient(g)
    h = 1e-7
    for k in range(3):
        e = np.zeros(3)
        e[k] = h
        fd = (rule.combine(g + e) - rule.combine(g - e)) / (2 * h)
        np.testing.assert_allclose(grad[:, k], fd, rtol=1e-5, atol=1e-9)
    # the independent rule's derivative is the product of the other shares left
    e = rule_expressions(2)
    d0 = e["d_independent"][0]
    assert sympy.simplify(d0 - (1 - e["g"][1] / e["H"])) == 0


def _random_problem(rng, k, control):
    inputs = []
    for i in range(k):
        p = (rng.uniform(control + 0.1, 0.95), rng.uniform(0.05, 0.4), rng.uniform(0.2, 0.9))
        inputs.append(
            SourceInput(
                f"s{i}",
                {"acc": make_fit(f"s{i}", P, dict(zip(P.param_names, p, strict=True)))},
                cap_tokens=10 ** rng.uniform(9, 11) if rng.random() < 0.3 else None,
            )
        )
    setup = CostSetup(Unit.GPU_HOURS, model_params=10 ** rng.uniform(7, 9))
    return build_problem(inputs, families(), {"acc": Control(control)}, setup, weights={"acc": 1.0})


@pytest.mark.parametrize("seed", range(6))
def test_coupled_optimum_agrees_with_scipy_minimize(seed):
    rng = np.random.default_rng(seed)
    control = rng.uniform(0.2, 0.5)
    prob = _random_problem(rng, int(rng.integers(2, 5)), control)
    rule = CombinationRule(headroom=1.0 - control, theta=float(rng.choice([0.0, 1.0])))
    budget = 10 ** rng.uniform(1, 3)
    got = solve_combined(prob, np.array([budget]), rule=rule)
    assert got.sol.spent[0] <= budget * (1 + 1e-9)
    curves = prob.curves
    afford = np.array(
        [min(c.cap_tokens, budget / float(c.cost(1.0))) for c in curves]
    )  # costs are linear in tokens here

    def value(z):
        d = np.maximum(z * afford, 0.0)
        return -float(rule.combine(evaluate_plan(prob, d[None, :], None))[0])

    cons = [
        {
            "type": "ineq",
            "fun": lambda z: (
                budget
                - sum(float(c.cost(zk * a)) for c, zk, a in zip(curves, z, afford, strict=True))
            ),
        }
    ]
    best = np.inf
    for _ in range(8):
        x0 = rng.dirichlet(np.ones(len(curves)))
        r = optimize.minimize(
            value,
            x0,
            method="SLSQP",
            bounds=[(0, 1)] * len(curves),
            constraints=cons,
            options={"ftol": 1e-14, "maxiter": 500},
        )
        if r.success:
            best = min(best, r.fun)
    assert np.isfinite(best)
    assert got.sol.total[0] >= -best - 1e-6 * abs(best)
    # and the certificate holds: interior sources share λ
    mu = combined_mu(prob, got.sol.tokens, rule)[0]
    d = got.sol.tokens[0]
    caps = np.array([c.cap_tokens for c in curves])
    inner = (d > 0) & (d < caps * (1 - 1e-6))
    if inner.sum() >= 2 and np.isfinite(got.sol.lam[0]):
        np.testing.assert_allclose(mu[inner], got.sol.lam[0], rtol=1e-4)


def test_interaction_fit_recovers_a_known_parameter():
    rng = np.random.default_rng(3)
    rule = CombinationRule(headroom=0.6)
    g = rng.uniform(0.02, 0.25, size=(12, 3))
    g[rng.random(g.shape) < 0.3] = 0.0
    truth = 1.7
    y = rule.with_theta(truth).combine(g) + rng.normal(0, 0.002, 12)
    boot = g[None] * rng.normal(1.0, 0.02, size=(30, *g.shape))
    fitted = fit_interaction(rule, g, y, boot)
    assert fitted.theta == pytest.approx(truth, abs=0.3)
    assert fitted.theta_low <= truth <= fitted.theta_high
    assert fitted.mixtures == 12
    # mixtures that add independently give back the independent rule
    flat = fit_interaction(rule, g, rule.combine(g))
    assert flat.theta == pytest.approx(0.0, abs=0.05)


def _plan_problem(control=0.4):
    rng = np.random.default_rng(0)
    specs = {
        "wide": ((0.80, 0.30, 0.5), None),
        "deep": ((0.75, 0.25, 0.4), None),
        "scarce": ((0.90, 0.30, 0.6), 3e9),  # the best per token, but little of it
        "weak": ((0.402, 0.1, 0.3), None),  # above the control only past the budget
    }
    inputs = []
    for name, (p, cap) in specs.items():
        boot = np.column_stack([rng.normal(v, 0.01 * abs(v), 60) for v in p])
        fit = make_fit(name, P, dict(zip(P.param_names, p, strict=True)), boot=boot)
        inputs.append(SourceInput(name, {"acc": fit}, cap_tokens=cap))
    setup = CostSetup(Unit.GPU_HOURS, model_params=135e6)
    prob = build_problem(inputs, families(), {"acc": Control(control)}, setup, weights={"acc": 1.0})
    import dataclasses

    return dataclasses.replace(prob, combination=CombinationRule(headroom=1.0 - control))


def test_plan_gain_stays_within_the_headroom_and_shows_its_certificate():
    from planner.allocate.plan import make_plan

    prob = _plan_problem()
    plan = make_plan(prob, 3000.0)
    head = prob.combination.headroom
    assert plan.success
    assert plan.combination.rule == "coverage" and plan.combination.headroom == head
    for v in (plan.gain, plan.gain_low, plan.gain_high):
        assert -head <= v <= head
    # adding the gains claims more than the one mixed anneal can give
    assert plan.additive_gain > plan.gain
    assert plan.confirmation.predicted_low <= plan.confirmation.predicted_gain
    assert plan.confirmation.predicted_gain <= plan.confirmation.predicted_high <= head
    cert = {c.source: c for c in plan.certificate}
    assert cert["scarce"].status == "capped" and cert["scarce"].limit == "supply"
    assert cert["weak"].status == "zero"
    inner = [c for c in plan.certificate if c.status == "interior"]
    assert len(inner) >= 2
    lam = plan.marginal_utility
    for c in inner:
        assert c.marginal_utility == pytest.approx(lam, rel=1e-4)
    assert cert["weak"].marginal_utility < lam < cert["scarce"].marginal_utility
    assert sum(a.cost for a in plan.allocations) == pytest.approx(3000.0, rel=1e-6)
