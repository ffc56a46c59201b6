from __future__ import annotations

import itertools

import numpy as np
import pytest
import sympy

from planner.allocate.frontier import crossovers, frontier
from planner.allocate.mixture import compare_mixed_runs, parse_mixture
from planner.allocate.model import N_TOKENS
from planner.allocate.plan import SEPARABILITY_NOTE, make_plan
from planner.allocate.problem import (
    Control,
    CostSetup,
    SourceInput,
    build_problem,
    cost_expr,
    parse_guard,
    parse_weights,
)
from planner.allocate.reference import slsqp
from planner.allocate.solve import solve_rows
from planner.allocate.testing import families, loss_power, make_fit, saturating_power
from planner.errors import SolveError
from planner.units import Unit

P = saturating_power()
SETUP = CostSetup(Unit.GPU_HOURS, model_params=135e6)


def _boot(p, sd, rng, b=120):
    return np.column_stack([rng.normal(v, s, b) for v, s in zip(p, sd, strict=True)])


def _two_sources(rng, *, cap=None, boot=True):
    fa, fb = (0.55, 0.1, 0.8), (0.70, 0.25, 0.3)
    return [
        SourceInput(
            "fast",
            {
                "acc": make_fit(
                    "fast",
                    P,
                    dict(zip(P.param_names, fa, strict=True)),
                    boot=_boot(fa, (0.01, 0.005, 0.05), rng) if boot else None,
                    x_max=2e9,
                )
            },
        ),
        SourceInput(
            "slow",
            {
                "acc": make_fit(
                    "slow",
                    P,
                    dict(zip(P.param_names, fb, strict=True)),
                    boot=_boot(fb, (0.03, 0.01, 0.05), rng) if boot else None,
                    x_max=2e9,
                )
            },
            cap_tokens=cap,
        ),
    ]


def _problem(inputs, control=0.40, **kw):
    return build_problem(
        inputs, families(), {"acc": Control(control)}, SETUP, weights={"acc": 1.0}, **kw
    )


def test_plan_carries_uncertainty_comparisons_and_the_separability_note():
    prob = _problem(_two_sources(np.random.default_rng(0)))
    plan = make_plan(prob, 2000.0)
    assert plan.success
    assert plan.gain_low <= plan.gain <= plan.gain_high
    assert sum(a.cost for a in plan.allocations) == pytest.approx(2000.0, rel=1e-6)
    for a in plan.allocations:
        assert 0.0 <= a.p_in_optimal <= 1.0
        assert a.tokens_low <= a.tokens_high
    assert SEPARABILITY_NOTE in plan.notes
    assert plan.confirmation.tokens > 0
    assert plan.point_estimate.choice in {"fast", "slow"}
    assert plan.point_estimate.gain_lost >= -1e-12  # the optimum is never worse
    assert 0.0 <= plan.uncertainty.p_beats_best_single <= 1.0
    assert plan.fit_ids == ()


def test_point_estimate_at_a_small_budget_can_pick_the_wrong_source():
    # fast saturates early (best at small budgets), slow keeps improving (best at large)
    rng = np.random.default_rng(1)
    fa, fb = (0.50, 0.02, 1.5), (0.70, 0.40, 0.25)
    inputs = [
        SourceInput(
            "fast",
            {"acc": make_fit("fast", P, dict(zip(P.param_names, fa, strict=True)))},
            curation=_Fee(900.0),
        ),
        SourceInput(
            "slow",
            {"acc": make_fit("slow", P, dict(zip(P.param_names, fb, strict=True)))},
            curation=_Fee(900.0),
        ),
    ]
    del rng
    prob = _problem(inputs, control=0.30)
    plan = make_plan(prob, 2000.0, micro_fraction=0.451)  # 2 GPU-h of training
    pe = plan.point_estimate
    assert pe.choice == "fast"
    assert plan.best_single.source == "slow"
    assert pe.gain_lost > 0.01
    cr = crossovers(prob, np.geomspace(901.0, 5000.0, 30))
    assert [(c.before, c.after) for c in cr.crossovers] == [("fast", "slow")]


class _Fee:
    unit = Unit.GPU_HOURS

    def __init__(self, fee, per_token=0.0):
        self.fee, self.per_token = fee, per_token

    def expr(self, n):
        return sympy.Float(self.fee) + sympy.Float(self.per_token) * n


def test_budget_below_fixed_costs_gives_a_message_not_an_exception():
    inputs = [
        SourceInput(s.name, s.fits, curation=_Fee(500.0))
        for s in _two_sources(np.random.default_rng(2))
    ]
    plan = make_plan(_problem(inputs), 100.0)
    assert not plan.success
    assert "below the fixed cost" in plan.message
    assert plan.allocations == ()


def test_no_source_beating_control_gives_a_message():
    plan = make_plan(_problem(_two_sources(np.random.default_rng(3)), control=0.95), 2000.0)
    assert not plan.success
    assert "beat the control" in plan.message


def test_evaluation_cost_above_budget_gives_a_message():
    prob = _problem(_two_sources(np.random.default_rng(3)))
    prob = type(prob)(
        **{**prob.__dict__, "setup": CostSetup(Unit.GPU_HOURS, 135e6, eval_cost=50.0)}
    )
    plan = make_plan(prob, 20.0)
    assert not plan.success and "evaluation cost" in plan.message


def test_a_loss_metric_counts_lower_as_better():
    L = loss_power()
    inputs = [
        SourceInput(
            "a",
            {
                "loss": make_fit(
                    "a", L, {"E": 2.0, "A": 0.5, "alpha": 0.3}, metric="loss", lower_is_better=True
                )
            },
        ),
    ]
    prob = build_problem(inputs, families(), {"loss": Control(2.6)}, SETUP, weights={"loss": 1.0})
    plan = make_plan(prob, 100.0)
    assert plan.success and plan.gain > 0
    d = plan.allocations[0].tokens
    assert plan.gain == pytest.approx(2.6 - (2.0 + 0.5 * (d / 1e9) ** -0.3), rel=1e-9)


def test_compute_measured_as_cost_derives_mu_through_the_cost_model():
    # x = total cost in GPU-hours / x_ref: MU must still match finite differences
    inputs = [
        SourceInput(
            "a",
            {"acc": make_fit("a", P, {"E": 0.6, "A": 0.1, "alpha": 0.5}, x_ref=10.0)},
            curation=_Fee(0.0, 1e-9),
        )
    ]
    prob = _problem(inputs, control=0.3, compute_units={"acc": Unit.GPU_HOURS})
    c = prob.curves[0]
    for d in (1e9, 1e10, 1e11):
        h = d * 1e-6
        fd = (c.gain(d + h) - c.gain(d - h)) / (c.cost(d + h) - c.cost(d - h))
        assert float(c.mu(d)) == pytest.approx(float(fd), rel=1e-5)
    # and the gain is the law at x = cost/x_ref
    cost = float(sympy.lambdify(N_TOKENS, cost_expr(N_TOKENS, _Fee(0.0, 1e-9), SETUP))(1e10))
    assert float(c.gain(1e10)) == pytest.approx(0.6 - 0.1 * (cost / 10.0) ** -0.5 - 0.3, rel=1e-12)


def test_weighted_objective_and_binding_guard_agree_with_slsqp():
    # "med" helps the domain metric most but erodes the general one as it grows;
    # "mix" helps the domain metric less and leaves the general one alone
    Lg, LL = saturating_power(), families()["t_loglinear"]

    def fits(name, dom, gen):
        return {
            "dom": make_fit(name, Lg, dict(zip(Lg.param_names, dom, strict=True)), metric="dom"),
            "gen": make_fit(name, LL, dict(zip(LL.param_names, gen, strict=True)), metric="gen"),
        }

    inputs = [
        SourceInput("med", fits("med", (0.70, 0.2, 0.4), (0.50, -0.02))),
        SourceInput("mix", fits("mix", (0.60, 0.15, 0.4), (0.50, 0.0))),
    ]
    controls = {"dom": Control(0.30), "gen": Control(0.50)}
    prob = build_problem(
        inputs,
        families(),
        controls,
        SETUP,
        weights={"dom": 1.0},
        guards=[parse_guard("gen>=-0.05")],
    )
    budget = 500.0
    rows = solve_rows(prob, np.array([budget]))
    assert rows.guard_ok[0]
    assert rows.mu[0, 0] > 0  # the guard binds
    assert rows.guard[0, 0] == pytest.approx(-0.05, abs=1e-6)
    # SLSQP with the guard as a constraint on the same curves (μ = 0: objective only)
    gcurves = prob.guard_curves[0]
    thetas = [c.theta.copy() for c in prob.curves]
    for k, t in enumerate(thetas):
        t[prob.mu_index(k, 0)] = 0.0
    afford = np.array([budget / float(c.cost(1.0)) for c in prob.curves])

    def g_con(z):
        d = np.maximum(z * afford, 1e-300)
        return sum(float(c.gain(d[k])) for k, c in enumerate(gcurves)) + 0.05

    _, ref, ok = slsqp(
        prob.curves,
        budget,
        thetas=thetas,
        x0=rows.sol.tokens[0] * 0.95,
        extra_constraints=[{"type": "ineq", "fun": g_con}],
    )
    assert ok
    assert abs(rows.sol.total[0] - ref) <= 1e-6 * abs(ref)


def test_frontier_gain_grows_with_budget():
    prob = _problem(_two_sources(np.random.default_rng(4), cap=5e10))
    rows = frontier(prob, np.geomspace(10, 1e4, 8), max_boot=40)
    gains = [r.gain for r in rows]
    assert all(b >= a - 1e-12 for a, b in itertools.pairwise(gains))
    assert all(r.gain_low <= r.gain_high for r in rows)
    assert rows[-1].tokens["slow"] == pytest.approx(5e10)


def test_mixture_names_and_measured_vs_predicted():
    assert parse_mixture("a+b") == {"a": 0.5, "b": 0.5}
    assert parse_mixture("a@0.7+b@0.3") == pytest.approx({"a": 0.7, "b": 0.3})
    assert parse_mixture("a@0.5+b+c") == pytest.approx({"a": 0.5, "b": 0.25, "c": 0.25})
    assert parse_mixture("plain") is None
    prob = _problem(_two_sources(np.random.default_rng(5), boot=False))
    pred = float(prob.curves[0].gain(1e9) + prob.curves[1].gain(1e9))
    [row] = compare_mixed_runs(prob, [("fast+slow", 2e9, 0.40 + pred + 0.01)])
    assert row.predicted_gain == pytest.approx(pred)
    assert row.difference == pytest.approx(0.01)


def test_parsers_reject_bad_input_with_a_plain_message():
    with pytest.raises(SolveError, match="metric>=number"):
        parse_guard("general_acc > 1")
    with pytest.raises(SolveError, match="metric=number"):
        parse_weights("a=1,b=x")
    assert parse_weights("a=1, b=0.5") == {"a": 1.0, "b": 0.5}


def test_missing_control_is_a_clear_error():
    with pytest.raises(SolveError, match="control"):
        build_problem(
            _two_sources(np.random.default_rng(6)), families(), {}, SETUP, weights={"acc": 1.0}
        )


def test_a_model_average_reaches_the_plan_with_its_laws_drawn_by_weight():
    """An averaged fit's curve is its laws' weighted mean at the point values, and each
    bootstrap row takes one law (row b of every source the same law, as the joint draws
    do), its share of the rows its weight: the plan's uncertainty includes which law is
    right."""
    from dataclasses import replace

    from planner.domain import AveragedLaw, ModelAverage

    LL = families()["t_loglinear"]
    rng = np.random.default_rng(3)
    B = 200
    pa, pb = (0.55, 0.1, 0.8), (0.30, 0.02)

    def averaged(source, shift):
        sat = dict(zip(P.param_names, (pa[0] + shift, *pa[1:]), strict=True))
        lin = dict(zip(LL.param_names, (pb[0] + shift, pb[1]), strict=True))
        boot_sat = _boot(list(sat.values()), (0.01, 0.005, 0.05), rng, B)
        boot_lin = _boot(list(lin.values()), (0.01, 0.002), rng, B)
        base = make_fit(source, P, sat, boot=boot_sat, x_max=2e9)
        members = (
            AveragedLaw("sat", P.name, 0.7, sat, boot_sat),
            AveragedLaw("lin", LL.name, 0.3, lin, boot_lin),
        )
        return replace(base, candidate="sat", average=ModelAverage(members)), sat, lin

    fa, sat_a, lin_a = averaged("a", 0.0)
    fb, _, _ = averaged("b", 0.05)
    prob = _problem([SourceInput("a", {"acc": fa}), SourceInput("b", {"acc": fb})])
    assert prob.n_boot == B
    d = 5e9
    x = d / 1e9
    law_sat = sat_a["E"] - sat_a["A"] * x ** -sat_a["alpha"]
    law_lin = lin_a["a"] + lin_a["b"] * np.log(x)
    assert float(prob.curves[0].gain(d)) == pytest.approx(0.7 * law_sat + 0.3 * law_lin - 0.40)
    # each row is one law: the rows' gains sit near one law or the other, never between
    th = prob.thetas(B, np.arange(B))

    def takes_lin(k, shift):
        g = np.array([float(prob.curves[k].gain(d, th[k][b])) for b in range(B)])
        return np.abs(g - (law_lin + shift - 0.40)) < np.abs(g - (law_sat + shift - 0.40))

    near_lin = takes_lin(0, 0.0)
    assert 0.25 <= near_lin.mean() <= 0.35
    # the same law in row b for both sources (one joint draw)
    assert np.array_equal(near_lin, takes_lin(1, 0.05))
    plan = make_plan(prob, 2000.0)
    assert plan.success and plan.gain_low <= plan.gain <= plan.gain_high
