"""Plans: the optimal allocation at a budget with its uncertainty, the best single source and
the point-estimate comparison beside it, and its caveats (separability, guard-rails,
extrapolation).

The solving is :mod:`planner.allocate.solve`'s (guard-rails included); plans across
budgets are in :mod:`planner.allocate.frontier`, the separability check in
:mod:`planner.allocate.mixture`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from planner.allocate.mixture import compare_mixed_runs, confirmation_anneal
from planner.allocate.pairwise_view import p_in_optimal
from planner.allocate.problem import AllocationProblem
from planner.allocate.solve import (
    BatchSolution,
    GuardedSolution,
    combined_mu,
    entry_return,
    evaluate_plan,
    objective_batch,
    single_gains,
    solve_combined,
)
from planner.domain import (
    BestSingle,
    CertificateEntry,
    Combination,
    GainRange,
    GuardCheck,
    Plan,
    PlanUncertainty,
    PointEstimate,
    SourceAllocation,
)
from planner.units import format_quantity

SEPARABILITY_NOTE = (
    "The solver assumes gains add across sources (each source's gain is measured in its own "
    "anneal against the control); mixtures can interact, so confirm the chosen mix with one "
    "anneal before spending the budget."
)
GUARD_NOTE = (
    "Guard-rails were enforced with a Lagrange multiplier found by bisection; with "
    "laws that are not concave the plan meets them but may not be the best that does."
)
COMBINATION_NOTE = (
    "The plan's gain is that of one mixed anneal: single-source gains combine by the "
    "coverage rule, bounded by the metric's headroom; confirm the mix with one anneal "
    "before spending the budget."
)
NO_BOOTSTRAP_NOTE = "The fits carry no bootstrap samples: no intervals or probabilities."
#: the percentiles of every interval a plan shows (a 90% interval)
QUANTILES = (5.0, 95.0)


def percentile_band(a: np.ndarray, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The :data:`QUANTILES` of ``a`` along ``axis`` (NaNs ignored)."""
    lo, hi = np.nanpercentile(a, QUANTILES, axis=axis)
    return lo, hi


def make_plan(
    problem: AllocationProblem,
    budget: float,
    *,
    micro_fraction: float = 0.05,
    mixed_runs: Sequence[tuple[str, float, float]] = (),
    max_boot: int = 400,
) -> Plan:
    """The cost-optimal plan at ``budget``, with uncertainty and comparisons.

    Args:
        problem: the allocation problem.
        budget: in ``problem.setup.unit``.
        micro_fraction: the single micro-anneal of the point-estimate comparison spends this
            share of the budget.
        mixed_runs: measured mixed runs ``(source, tokens, value of the main metric)`` with
            source names like ``a+b`` or ``a@0.7+b@0.3`` (see
            :func:`planner.allocate.mixture.parse_mixture`).
        max_boot: at most this many bootstrap rows are solved.

    Returns:
        A :class:`~planner.domain.Plan`; ``success=False`` with a plain message when the
        budget cannot buy anything or no source beats the control anneal.
    """
    unit = problem.setup.unit
    base: dict[str, Any] = dict(
        budget=float(budget),
        unit=unit,
        metric=problem.metric_label,
        fit_ids=problem.fit_ids,
        eval_cost=problem.setup.eval_cost,
    )
    rule = problem.rule
    notes = [COMBINATION_NOTE if rule.bounded else SEPARABILITY_NOTE]
    base["combination"] = _combination(rule)
    base["trust_multiple"] = problem.trust_multiple
    avail = budget - problem.setup.eval_cost
    if avail <= 0:
        message = (
            f"the budget {format_quantity(budget, unit)} does not cover the evaluation cost "
            f"{format_quantity(problem.setup.eval_cost, unit)}; raise the budget"
        )
        return _no_plan(base, message, notes)
    point = solve_combined(problem, np.array([budget]), rule=rule)
    message = _why_no_plan(problem, budget, point)
    if message:
        return _no_plan(base, message, notes)
    sol = point.sol
    tokens = sol.tokens[0]
    if problem.guards:
        notes.append(GUARD_NOTE)
    single, pe, single_tokens, micro_tokens = _single_source_plans(
        problem, avail, micro_fraction * avail, float(sol.total[0])
    )
    boot = _bootstrap(problem, budget, tokens, single_tokens, micro_tokens, max_boot)
    if boot is None:
        notes.append(NO_BOOTSTRAP_NOTE)
    else:
        pe = replace(pe, gain_lost_low=boot.gain_lost[0], gain_lost_high=boot.gain_lost[1])
    notes += _extrapolation_notes(problem, tokens)
    certificate = _certificate(problem, sol)
    trust_limited = tuple(c.source for c in certificate if c.limit == "trust")
    notes += _trust_notes(problem, certificate, float(sol.lam[0]))
    return Plan(
        **base,
        allocations=_allocations(problem, sol, boot),
        gain=float(sol.total[0]),
        gain_low=float(np.nan if boot is None else boot.gain_low),
        gain_high=float(np.nan if boot is None else boot.gain_high),
        success=True,
        message=f"spend {format_quantity(float(sol.spent[0]), unit)} of {format_quantity(budget, unit)}",
        notes=tuple(notes),
        marginal_utility=float(sol.lam[0]),
        guards=tuple(
            GuardCheck(str(g), float(point.guard[i, 0]), float(point.mu[i, 0]))
            for i, g in enumerate(problem.guards)
        ),
        best_single=single,
        point_estimate=pe,
        uncertainty=None if boot is None else boot.summary,
        confirmation=confirmation_anneal(problem, tokens, pe.micro_budget, max_boot=max_boot),
        mixed_runs=tuple(compare_mixed_runs(problem, mixed_runs)) if mixed_runs else (),
        certificate=certificate,
        additive_gain=float(np.sum(sol.gain[0])),
        additive_low=None if boot is None else boot.additive[0],
        additive_high=None if boot is None else boot.additive[1],
        trust_limited=trust_limited,
    )


def _combination(rule: Any) -> Combination:
    return Combination(
        rule=rule.rule if rule.bounded else "additive",
        headroom=float(rule.headroom) if rule.bounded else float("nan"),
        interaction=float(rule.theta),
        interaction_low=rule.theta_low,
        interaction_high=rule.theta_high,
        mixtures=rule.mixtures,
    )


def _certificate(problem: AllocationProblem, sol: BatchSolution) -> tuple[CertificateEntry, ...]:
    """Each source's marginal combined gain per unit of cost at the plan, and its status.

    Interior sources (strictly between 0 and their cap) share the multiplier λ; a source
    left at 0 returns less for its first unit of cost; a source held at its supply cap or
    at the trust region's limit would return more.
    """
    tokens = sol.tokens[0]
    mu = combined_mu(problem, sol.tokens[:1], problem.rule)[0]
    # a source left out is judged by the best return it could give per unit of cost
    # (its first token's return for a concave law; the concave envelope's otherwise),
    # weighted by the combined gain's gradient at the plan; never above 0 when buying it
    # could not beat the control
    entry = entry_return(problem, sol.tokens[:1], float(sol.spent[0]))[0]
    mu = np.where(tokens > 0, mu, np.maximum(entry, 0.0))
    out = []
    for k, name in enumerate(problem.names):
        cap = problem.curves[k].cap_tokens
        supply = problem.supply_caps[k] if problem.supply_caps else cap
        status, limit = "interior", ""
        if tokens[k] <= 0:
            status = "zero"
        elif np.isfinite(cap) and tokens[k] >= cap * (1 - 1e-6):
            status = "capped"
            limit = "trust" if cap < supply * (1 - 1e-9) else "supply"
        out.append(CertificateEntry(name, status, float(mu[k]), float(tokens[k]), limit))
    return tuple(out)


def _trust_notes(
    problem: AllocationProblem, certificate: Sequence[CertificateEntry], lam: float
) -> list[str]:
    """What the trust region held back, and what to measure to extend it."""
    # each held-back source is named with its limit by the plan's trust lines (the
    # report's story); the notes say what that means for the budget
    held = [c for c in certificate if c.limit == "trust"]
    notes = []
    if held:
        notes.append(
            f"{', '.join(c.source for c in held)} held at the trust region's limit "
            f"({problem.trust_multiple:g}× the largest measured budget): "
            "`annealplan next` proposes the runs that would extend it"
        )
    if held and not lam > 0:
        notes.append(
            "the budget could buy more than the trust region allows: the rest is left unspent"
        )
    return notes


def _no_plan(base: dict[str, Any], message: str, notes: Sequence[str]) -> Plan:
    return Plan(**base, allocations=(), gain=0.0, success=False, message=message, notes=(*notes,))


def _why_no_plan(problem: AllocationProblem, budget: float, point: GuardedSolution) -> str:
    """Why the point plan at ``budget`` is no plan (empty when it is one)."""
    unit = problem.setup.unit
    sol = point.sol
    if not sol.feasible[0]:
        cheapest = _cheapest_entry(problem)
        return (
            f"the budget {format_quantity(budget, unit)} is below the fixed cost of every "
            f"source (the cheapest start is {format_quantity(cheapest, unit)}); "
            "raise the budget or add a cheaper source"
        )
    if not sol.total[0] > 0:
        return (
            f"no source is predicted to beat the control anneal on {problem.metric_label} at "
            f"{format_quantity(budget, unit)}; spend nothing, or measure more sources "
            "(`annealplan next`)"
        )
    if not point.guard_ok[0]:
        bad = ", ".join(
            str(g)
            for g, v in zip(problem.guards, point.guard[:, 0], strict=True)
            if v < g.sign * g.threshold
        )
        return (
            f"no plan meets the guard-rail(s) {bad} at this budget; relax them or raise the budget"
        )
    return ""


def _cheapest_entry(problem: AllocationProblem) -> float:
    costs = []
    for c in problem.curves:
        with np.errstate(all="ignore"):
            costs.append(float(c.cost(1.0)))
    return min(costs) if costs else float("nan")


def _single_source_plans(
    problem: AllocationProblem, avail: float, micro_budget: float, plan_gain: float
) -> tuple[BestSingle, PointEstimate, np.ndarray, np.ndarray]:
    """The best single source at the budget and the point estimate's choice.

    The point estimate reads the laws at a micro budget (what one micro-anneal per source
    would measure) and spends the whole budget on the source that wins there.

    Returns:
        The best single source, the point-estimate comparison, and the tokens (1, K) of the
        two one-source plans.
    """
    names = problem.names
    d1, g1 = single_gains(objective_batch(problem, np.array([avail])))
    kbest = int(np.argmax(g1[0]))
    _dm, gm = single_gains(objective_batch(problem, np.array([micro_budget])))
    kmicro = int(np.argmax(gm[0]))
    micro_tokens = np.zeros((1, len(names)))
    micro_tokens[0, kmicro] = d1[0, kmicro]
    single_tokens = np.zeros((1, len(names)))
    single_tokens[0, kbest] = d1[0, kbest]
    single = BestSingle(
        source=names[kbest],
        tokens=float(d1[0, kbest]),
        gain=float(g1[0, kbest]),
        gain_by_source={n: float(v) for n, v in zip(names, g1[0], strict=True)},
    )
    pe = PointEstimate(
        micro_budget=float(micro_budget),
        choice=names[kmicro],
        predicted_gain_at_micro={n: float(v) for n, v in zip(names, gm[0], strict=True)},
        gain_if_followed=float(g1[0, kmicro]),
        gain_lost=float(plan_gain - g1[0, kmicro]),
        differs_from_best_single=kmicro != kbest,
    )
    return single, pe, single_tokens, micro_tokens


@dataclass(frozen=True)
class _Bootstrap:
    """The plan under every bootstrap sample.

    Attributes:
        gain_low, gain_high: the interval of the plan's total gain.
        per_source: per source (gain low, gain high, P(in optimal), tokens low, tokens high).
        summary: what the plan reports.
        gain_lost: the interval of what following the point estimate's choice loses.
    """

    gain_low: float
    gain_high: float
    per_source: list[tuple[float, float, float, float, float]]
    summary: PlanUncertainty
    gain_lost: tuple[float, float]
    additive: tuple[float, float]


def _bootstrap(
    problem: AllocationProblem,
    budget: float,
    tokens: np.ndarray,
    single_tokens: np.ndarray,
    micro_tokens: np.ndarray,
    max_boot: int,
) -> _Bootstrap | None:
    """Every bootstrap sample solved, and the point plan (and the two one-source plans)
    under each; None without samples."""
    B = min(problem.n_boot, max_boot)
    if B <= 1:
        return None
    K = len(problem.names)
    sample = np.arange(B)
    rule = problem.rule
    boot = solve_combined(problem, np.full(B, budget), sample, rule=rule)
    bt = boot.sol.tokens
    in_opt = p_in_optimal(problem, budget, bt, sample)  # as solved, or recalibrated
    plan_gain = evaluate_plan(problem, np.broadcast_to(tokens, (B, K)), sample)
    tot = rule.combine(plan_gain)
    single_gain = rule.combine(
        evaluate_plan(problem, np.broadcast_to(single_tokens, (B, K)), sample)
    )
    micro_gain = rule.combine(evaluate_plan(problem, np.broadcast_to(micro_tokens, (B, K)), sample))
    gain_low, gain_high = percentile_band(tot)
    glo, ghi = percentile_band(plan_gain)
    tlo, thi = percentile_band(bt)
    opt = boot.sol.total
    olo, ohi = percentile_band(opt)
    # a sample's plan "matches" the point plan when following the point plan loses < 5 %
    regret = opt - tot
    summary = PlanUncertainty(
        samples=B,
        optimal_gain=GainRange(float(np.median(opt)), float(olo), float(ohi)),
        p_plan_near_optimal=float(np.mean(regret <= 0.05 * np.abs(opt) + 1e-12)),
        p_beats_best_single=float(np.mean(tot > single_gain)),
        p_beats_point_estimate_choice=float(np.mean(tot > micro_gain)),
        p_in_optimal={n: float(v) for n, v in zip(problem.names, in_opt, strict=True)},
        quantiles=QUANTILES,
    )
    lost_low, lost_high = (float(v) for v in percentile_band(opt - micro_gain))
    return _Bootstrap(
        gain_low=gain_low,
        gain_high=gain_high,
        per_source=[(glo[k], ghi[k], in_opt[k], tlo[k], thi[k]) for k in range(K)],
        summary=summary,
        gain_lost=(lost_low, lost_high),
        additive=tuple(float(v) for v in percentile_band(plan_gain.sum(axis=1))),
    )


def _allocations(
    problem: AllocationProblem, sol: BatchSolution, boot: _Bootstrap | None
) -> tuple[SourceAllocation, ...]:
    """Per source: the point plan's tokens, cost and gain, with the bootstrap intervals."""
    tokens = sol.tokens[0]
    out = []
    for k, name in enumerate(problem.names):
        cap = problem.curves[k].cap_tokens
        glo, ghi, pin, tlo, thi = (np.nan,) * 5 if boot is None else boot.per_source[k]
        out.append(
            SourceAllocation(
                source=name,
                tokens=float(tokens[k]),
                cost=float(sol.cost[0, k]),
                gain=float(sol.gain[0, k]),
                gain_low=float(glo),
                gain_high=float(ghi),
                p_in_optimal=float(pin),
                capped=bool(np.isfinite(cap) and tokens[k] >= cap * (1 - 1e-9)),
                tokens_low=float(tlo),
                tokens_high=float(thi),
                trust_tokens=_trust_tokens(problem, k),
            )
        )
    return tuple(out)


def _trust_tokens(problem: AllocationProblem, k: int) -> float | None:
    if problem.trust_multiple is None or not problem.largest_tokens:
        return None
    largest = problem.largest_tokens[k]
    return float(problem.trust_multiple * largest) if np.isfinite(largest) else None


def _extrapolation_notes(problem: AllocationProblem, tokens: np.ndarray) -> list[str]:
    """A note per source the plan gives more than twice the largest run its law was fitted on."""
    notes = []
    for k, name in enumerate(problem.names):
        xm = problem.x_max_tokens[k]
        if tokens[k] > 0 and np.isfinite(xm) and tokens[k] > 2 * xm:
            notes.append(
                f"{name}: the plan uses {tokens[k]:.3g} tokens, {tokens[k] / xm:.0f}× the largest "
                "run fitted; the law is extrapolated that far."
            )
    return notes
