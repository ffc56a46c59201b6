"""Plans: the optimal allocation at a budget with its uncertainty, the point-estimate
comparison, separability caveats, the frontier across budgets, and crossovers.

Guard-rails are solved by an outer Lagrange multiplier: the solver maximises
``Σ gain + μ·Σ guard`` (the guard terms are part of every source's sympy expression, with μ as
a parameter), and μ ≥ 0 is found by bisection, per row and vectorised, as the smallest
multiplier whose plan meets the guard. Several guards are handled by cyclic bisection on each
multiplier in turn (a few sweeps); a guard still violated after that is reported as a failed
plan. For laws that are not concave the dual can miss the best feasible plan (a duality gap);
the plan is then feasible but possibly not optimal, and says so.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from planner.allocate.problem import Problem
from planner.allocate.solve import Batch, Solution, single_gains, solve
from planner.domain import Plan, SourceAllocation
from planner.units import format_quantity

SEPARABILITY_NOTE = (
    "The solver assumes gains add across sources (each source's gain is measured in its own "
    "anneal against the control); mixtures can interact, so confirm the chosen mix with one "
    "anneal before spending the budget."
)
_MU_SWEEPS = 3
_MU_BISECT = 32
_Q = (5.0, 95.0)


@dataclass(frozen=True)
class RowSolution:
    """A solve of R rows with the objective separated from the guard terms.

    Attributes:
        sol: the solver's solution (its ``gain`` is the objective gain per source).
        guard: (G, R) the guarded quantity per guard.
        mu: (G, R) the multipliers used.
        guard_ok: (R,) every guard holds.
    """

    sol: Solution
    guard: np.ndarray
    mu: np.ndarray
    guard_ok: np.ndarray


def solve_rows(
    problem: Problem, budgets: np.ndarray, sample: np.ndarray | None = None
) -> RowSolution:
    """Solve rows (one budget each, bootstrap row ``sample`` each or the point fit).

    Args:
        problem: the allocation problem.
        budgets: (R,) budgets in the problem's unit, before the evaluation cost.
        sample: (R,) bootstrap row per row, or None for the point values.
    """
    budgets = np.maximum(np.asarray(budgets, dtype=float) - problem.setup.eval_cost, 0.0)
    R = budgets.shape[0]
    thetas = problem.thetas(R, sample)
    G = len(problem.guards)
    gthetas = [problem.guard_thetas(g, R, sample) for g in range(G)]
    gbatches = [
        Batch(problem.guard_curves[g], gthetas[g], budgets, prepare=False) for g in range(G)
    ]
    mu = np.zeros((G, R))

    def run(mu: np.ndarray, repair: bool = False) -> tuple[Solution, np.ndarray]:
        for k in range(len(problem.curves)):
            for g in range(G):
                thetas[k][:, problem.mu_index(k, g)] = mu[g]
        sol = solve(Batch(problem.curves, thetas, budgets), repair=repair)
        gv = np.array([gb.gain(sol.tokens).sum(axis=1) for gb in gbatches]).reshape(G, R)
        return sol, gv

    sol, gv = run(mu, repair=not G)
    thr = np.array([g.sign * g.threshold for g in problem.guards]).reshape(G, 1)
    if G:
        for _ in range(_MU_SWEEPS if G > 1 else 1):
            for g in range(G):
                need = gv[g] < thr[g, 0] - 1e-12
                if not need.any():
                    continue
                # bracket μ_g: double until the guard holds (or give up at a huge μ)
                lo = np.where(need, 0.0, mu[g])
                hi = np.where(need, 1.0, mu[g])
                for _ in range(40):
                    trial = mu.copy()
                    trial[g] = hi
                    _, gt = run(trial)
                    short = need & (gt[g] < thr[g, 0] - 1e-12)
                    if not short.any():
                        break
                    hi = np.where(short, hi * 4.0, hi)
                for _ in range(_MU_BISECT):
                    mid = np.where(need, 0.5 * (lo + hi), mu[g])
                    trial = mu.copy()
                    trial[g] = mid
                    _, gt = run(trial)
                    ok = gt[g] >= thr[g, 0] - 1e-12
                    hi = np.where(need & ok, mid, hi)
                    lo = np.where(need & ~ok, mid, lo)
                mu[g] = np.where(need, hi, mu[g])
                sol, gv = run(mu)
        sol, gv = run(mu, repair=True)
    # report the objective alone: take the μ·guard terms back out, per source
    gain = sol.gain.copy()
    for g, gb in enumerate(gbatches):
        gain -= mu[g][:, None] * gb.gain(sol.tokens)
    total = np.where(sol.tokens.sum(axis=1) > 0, gain.sum(axis=1), 0.0)
    sol = Solution(sol.tokens, sol.cost, gain, total, sol.lam, sol.spent, sol.feasible)
    ok = np.all(gv >= thr - 1e-9 * np.maximum(1.0, np.abs(thr)), axis=0) if G else np.ones(R, bool)
    return RowSolution(sol, gv, mu, ok)


def evaluate_plan(problem: Problem, tokens: np.ndarray, sample: np.ndarray | None) -> np.ndarray:
    """Objective gain per source of fixed ``tokens`` (R, K) under point or bootstrap rows."""
    R = tokens.shape[0]
    thetas = problem.thetas(R, sample)
    for k in range(len(problem.curves)):
        for g in range(len(problem.guards)):
            thetas[k][:, problem.mu_index(k, g)] = 0.0
    return Batch(problem.curves, thetas, np.ones(R), prepare=False).gain(tokens)


def _q(a: np.ndarray, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    lo, hi = np.nanpercentile(a, _Q, axis=axis)
    return lo, hi


def make_plan(
    problem: Problem,
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
            source names like ``a+b`` or ``a@0.7+b@0.3`` (see :func:`parse_mixture`).
        max_boot: at most this many bootstrap rows are solved.

    Returns:
        A :class:`~planner.domain.Plan`; ``success=False`` with a plain message when the
        budget cannot buy anything or no source beats the control anneal.
    """
    unit = problem.setup.unit
    names = problem.names
    label = problem.metric_label
    notes = [SEPARABILITY_NOTE]
    base = dict(budget=float(budget), unit=unit, metric=label, fit_ids=problem.fit_ids)
    avail = budget - problem.setup.eval_cost
    if avail <= 0:
        return Plan(
            **base,
            allocations=(),
            gain=0.0,
            success=False,
            message=(
                f"the budget {format_quantity(budget, unit)} does not cover the evaluation cost "
                f"{format_quantity(problem.setup.eval_cost, unit)}; raise the budget"
            ),
            notes=tuple(notes),
        )
    point = solve_rows(problem, np.array([budget]))
    sol = point.sol
    if not sol.feasible[0]:
        cheapest = _cheapest_entry(problem)
        return Plan(
            **base,
            allocations=(),
            gain=0.0,
            success=False,
            message=(
                f"the budget {format_quantity(budget, unit)} is below the fixed cost of every "
                f"source (the cheapest start is {format_quantity(cheapest, unit)}); "
                "raise the budget or add a cheaper source"
            ),
            notes=tuple(notes),
        )
    tokens = sol.tokens[0]
    if not sol.total[0] > 0:
        return Plan(
            **base,
            allocations=(),
            gain=0.0,
            success=False,
            message=(
                f"no source is predicted to beat the control anneal on {label} at "
                f"{format_quantity(budget, unit)}; spend nothing, or measure more sources "
                "(`annealplan next`)"
            ),
            notes=tuple(notes),
        )
    if not point.guard_ok[0]:
        bad = ", ".join(
            str(g)
            for g, v in zip(problem.guards, point.guard[:, 0], strict=True)
            if v < g.sign * g.threshold
        )
        return Plan(
            **base,
            allocations=(),
            gain=0.0,
            success=False,
            message=f"no plan meets the guard-rail(s) {bad} at this budget; relax them or raise the budget",
            notes=tuple(notes),
        )
    extra: dict = {"lambda": float(sol.lam[0]), "eval_cost": problem.setup.eval_cost}
    if problem.guards:
        extra["guards"] = [
            {
                "guard": str(g),
                "value": float(point.guard[i, 0]),
                "multiplier": float(point.mu[i, 0]),
            }
            for i, g in enumerate(problem.guards)
        ]
        notes.append(
            "Guard-rails were enforced with a Lagrange multiplier found by bisection; with "
            "laws that are not concave the plan meets them but may not be the best that does."
        )

    # --- best single source and the point-estimate (micro-anneal) comparison ----------
    R1 = np.array([avail])
    th = problem.thetas(1)
    for k in range(len(problem.curves)):
        for g in range(len(problem.guards)):
            th[k][:, problem.mu_index(k, g)] = 0.0
    d1, g1 = single_gains(Batch(problem.curves, th, R1))
    kbest = int(np.argmax(g1[0]))
    micro_budget = micro_fraction * avail
    _dm, gm = single_gains(Batch(problem.curves, th, np.array([micro_budget])))
    kmicro = int(np.argmax(gm[0]))
    micro_tokens = np.zeros((1, len(names)))
    micro_tokens[0, kmicro] = d1[0, kmicro]
    single_tokens = np.zeros((1, len(names)))
    single_tokens[0, kbest] = d1[0, kbest]
    extra["best_single"] = {
        "source": names[kbest],
        "tokens": float(d1[0, kbest]),
        "gain": float(g1[0, kbest]),
        "gain_by_source": {n: float(v) for n, v in zip(names, g1[0], strict=True)},
    }
    extra["point_estimate"] = {
        "micro_budget": float(micro_budget),
        "choice": names[kmicro],
        "predicted_gain_at_micro": {n: float(v) for n, v in zip(names, gm[0], strict=True)},
        "gain_if_followed": float(g1[0, kmicro]),
        "gain_lost": float(sol.total[0] - g1[0, kmicro]),
        "differs_from_best_single": kmicro != kbest,
    }

    # --- uncertainty: every bootstrap sample solved, and the point plan under each ------
    allocs_ci = [(np.nan, np.nan, np.nan, np.nan, np.nan)] * len(names)
    gain_low = gain_high = np.nan
    B = min(problem.n_boot, max_boot)
    if B > 1:
        sample = np.arange(B)
        boot = solve_rows(problem, np.full(B, budget), sample)
        bt = boot.sol.tokens
        in_opt = (bt > 0).mean(axis=0)
        plan_gain = evaluate_plan(problem, np.broadcast_to(tokens, (B, len(names))), sample)
        tot = plan_gain.sum(axis=1)
        single_gain = evaluate_plan(
            problem, np.broadcast_to(single_tokens, (B, len(names))), sample
        ).sum(axis=1)
        micro_gain = evaluate_plan(
            problem, np.broadcast_to(micro_tokens, (B, len(names))), sample
        ).sum(axis=1)
        gain_low, gain_high = _q(tot)
        glo, ghi = _q(plan_gain)
        tlo, thi = _q(bt)
        allocs_ci = [(glo[k], ghi[k], in_opt[k], tlo[k], thi[k]) for k in range(len(names))]
        opt = boot.sol.total
        olo, ohi = _q(opt)
        # a sample's plan "matches" the point plan when following the point plan loses < 5 %
        regret = opt - tot
        extra["uncertainty"] = {
            "samples": B,
            "optimal_gain": {
                "median": float(np.median(opt)),
                "low": float(olo),
                "high": float(ohi),
            },
            "p_plan_near_optimal": float(np.mean(regret <= 0.05 * np.abs(opt) + 1e-12)),
            "p_beats_best_single": float(np.mean(tot > single_gain)),
            "p_beats_point_estimate_choice": float(np.mean(tot > micro_gain)),
            "p_in_optimal": {n: float(v) for n, v in zip(names, in_opt, strict=True)},
            "quantiles": list(_Q),
        }
        extra["point_estimate"]["gain_lost_low"], extra["point_estimate"]["gain_lost_high"] = (
            float(v) for v in _q(opt - micro_gain)
        )
    else:
        notes.append("The fits carry no bootstrap samples: no intervals or probabilities.")

    allocations = []
    for k, name in enumerate(names):
        cap = problem.curves[k].cap_tokens
        glo, ghi, pin, tlo, thi = allocs_ci[k]
        allocations.append(
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
            )
        )
    # extrapolation beyond the fitted range
    for k, name in enumerate(names):
        xm = problem.x_max_tokens[k]
        if tokens[k] > 0 and np.isfinite(xm) and tokens[k] > 2 * xm:
            notes.append(
                f"{name}: the plan uses {tokens[k]:.3g} tokens, {tokens[k] / xm:.0f}× the largest "
                "run fitted; the law is extrapolated that far."
            )
    extra["confirmation"] = confirmation_anneal(problem, tokens, micro_budget)
    if mixed_runs:
        extra["mixed_runs"] = compare_mixed_runs(problem, mixed_runs)
    return Plan(
        **base,
        allocations=tuple(allocations),
        gain=float(sol.total[0]),
        gain_low=float(gain_low),
        gain_high=float(gain_high),
        success=True,
        message=f"spend {format_quantity(float(sol.spent[0]), unit)} of {format_quantity(budget, unit)}",
        notes=tuple(notes),
        extra=extra,
    )


def _cheapest_entry(problem: Problem) -> float:
    costs = []
    for c in problem.curves:
        with np.errstate(all="ignore"):
            costs.append(float(c.cost(1.0)))
    return min(costs) if costs else float("nan")


def confirmation_anneal(problem: Problem, tokens: np.ndarray, spend: float) -> dict:
    """A mixed anneal of the chosen mix, scaled down to cost ``spend``, to test separability.

    Returns:
        ``{"source": "a@0.6+b@0.4", "tokens": total, "tokens_per_source": {...},
        "predicted_gain": ...}`` (empty dict when the plan uses nothing).
    """
    used = [k for k in range(len(tokens)) if tokens[k] > 0]
    if not used:
        return {}
    share = tokens / tokens.sum()
    lo, hi = 0.0, 1.0
    curves = problem.curves
    for _ in range(80):  # scale s so the mix at s·tokens costs `spend`
        mid = 0.5 * (lo + hi)
        c = sum(float(curves[k].cost(mid * tokens[k])) for k in used)
        lo, hi = (mid, hi) if c <= spend else (lo, mid)
    scaled = lo * tokens
    pred = evaluate_plan(problem, scaled[None, :], None)[0]
    name = "+".join(f"{problem.names[k]}@{share[k]:.3g}" for k in used)
    return {
        "source": name,
        "tokens": float(scaled.sum()),
        "tokens_per_source": {problem.names[k]: float(scaled[k]) for k in used},
        "predicted_gain": float(pred.sum()),
        "note": "run it as one anneal; compare its measured gain with the prediction",
    }


_MIX_PART = re.compile(r"^\s*([^@]+?)\s*(?:@\s*([\d.]+(?:e[-+]?\d+)?))?\s*$", re.I)


def parse_mixture(source: str) -> dict[str, float] | None:
    """Read a mixed run's source name: ``a+b`` (equal shares) or ``a@0.7+b@0.3``.

    This is the convention for runs that anneal on several sources at once: the run's
    source names its components joined by ``+``, each optionally with its share of the run's
    source tokens after ``@``; missing shares split what is left equally. Returns None for a
    single-source name.
    """
    parts = [p for p in source.split("+") if p.strip()]
    if len(parts) < 2:
        return None
    out: dict[str, float | None] = {}
    for p in parts:
        m = _MIX_PART.match(p)
        if not m:
            return None
        out[m[1]] = float(m[2]) if m[2] else None
    given = sum(v for v in out.values() if v is not None)
    free = [k for k, v in out.items() if v is None]
    rest = max(1.0 - given, 0.0) / len(free) if free else 0.0
    shares = {k: (v if v is not None else rest) for k, v in out.items()}
    total = sum(shares.values())
    return {k: v / total for k, v in shares.items()} if total > 0 else None


def compare_mixed_runs(problem: Problem, runs: Sequence[tuple[str, float, float]]) -> list[dict]:
    """Measured vs predicted gain of mixed runs (the separability check).

    Args:
        runs: ``(source, tokens, measured value)`` of the main (first weighted) metric.
    """
    metric = next(iter(problem.weights))
    ctrl = problem.controls.get(metric)
    out = []
    for source, tok, value in runs:
        shares = parse_mixture(source)
        if not shares or ctrl is None or not np.isfinite(tok):
            continue
        unknown = [s for s in shares if s not in problem.names]
        if unknown:
            out.append({"source": source, "skipped": f"unknown source(s) {', '.join(unknown)}"})
            continue
        tokens = np.array([[shares.get(n, 0.0) * tok for n in problem.names]])
        pred_by = evaluate_plan(problem, tokens, None)[0]
        w = problem.weights[metric]
        pred = float(pred_by.sum()) / w if len(problem.weights) == 1 else float("nan")
        lib = any(i.fits[metric].lower_is_better for i in problem.inputs if metric in i.fits)
        measured = (ctrl.value - value) if lib else (value - ctrl.value)
        out.append(
            {
                "source": source,
                "tokens": float(tok),
                "measured_gain": float(measured),
                "predicted_gain": pred,
                "difference": float(measured - pred),
            }
        )
    return out


def frontier(problem: Problem, budgets: Sequence[float], *, max_boot: int = 200) -> list[dict]:
    """The optimal plan and its gain across budgets (vectorised over budgets and samples).

    Returns:
        One dict per budget: ``budget, gain, gain_low, gain_high, tokens {source: n},
        best_single, best_single_gain, success``.
    """
    b = np.asarray(budgets, dtype=float)
    pt = solve_rows(problem, b)
    avail = np.maximum(b - problem.setup.eval_cost, 0.0)
    th = problem.thetas(b.size)
    for k in range(len(problem.curves)):
        for g in range(len(problem.guards)):
            th[k][:, problem.mu_index(k, g)] = 0.0
    _, gs = single_gains(Batch(problem.curves, th, avail))
    lows = highs = np.full(b.size, np.nan)
    B = min(problem.n_boot, max_boot)
    if B > 1:
        sample = np.repeat(np.arange(B), b.size)
        rows = solve_rows(problem, np.tile(b, B), sample)
        tot = rows.sol.total.reshape(B, b.size)
        lows, highs = _q(tot)
    out = []
    for i, bud in enumerate(b):
        kb = int(np.argmax(gs[i]))
        out.append(
            {
                "budget": float(bud),
                "gain": float(pt.sol.total[i]),
                "gain_low": float(lows[i]),
                "gain_high": float(highs[i]),
                "tokens": {n: float(pt.sol.tokens[i, k]) for k, n in enumerate(problem.names)},
                "best_single": problem.names[kb] if np.isfinite(gs[i, kb]) else None,
                "best_single_gain": float(gs[i, kb]),
                "success": bool(pt.sol.feasible[i] and pt.sol.total[i] > 0 and pt.guard_ok[i]),
            }
        )
    return out


def crossovers(problem: Problem, budgets: Sequence[float], *, max_boot: int = 200) -> dict:
    """Budgets at which the best single source changes, with probabilities.

    The best single source at a budget is the one whose whole-budget plan gains most. The
    point laws give the crossover budgets (refined by bisection between grid budgets); the
    bootstrap samples give, per budget, the probability that each source is the best, and per
    crossover the share of samples that cross between the same two sources in the range, with
    the quantiles of where they cross.

    Returns:
        ``{"budgets": [...], "best": [...], "p_best": {source: [...]}, "crossovers": [...]}``.
    """
    b = np.sort(np.asarray(budgets, dtype=float))
    avail = np.maximum(b - problem.setup.eval_cost, 0.0)

    def best_at(av: np.ndarray, sample: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        th = problem.thetas(av.size, sample)
        for k in range(len(problem.curves)):
            for g in range(len(problem.guards)):
                th[k][:, problem.mu_index(k, g)] = 0.0
        _, gs = single_gains(Batch(problem.curves, th, av))
        best = np.argmax(gs, axis=1)
        best = np.where(np.max(gs, axis=1) > 0, best, -1)  # -1: nothing beats control
        return best, gs

    best, _ = best_at(avail, None)
    names = problem.names
    found = []
    for i in range(b.size - 1):
        if best[i] != best[i + 1]:
            lo, hi = avail[i], avail[i + 1]
            a, c = best[i], best[i + 1]
            for _ in range(40):
                mid = np.sqrt(lo * hi) if lo > 0 else 0.5 * (lo + hi)
                bm, _ = best_at(np.array([mid]), None)
                lo, hi = (mid, hi) if bm[0] == a else (lo, mid)
            found.append(
                {
                    "budget": float(np.sqrt(lo * hi) + problem.setup.eval_cost),
                    "from": names[a] if a >= 0 else None,
                    "to": names[c] if c >= 0 else None,
                }
            )
    result: dict = {
        "budgets": [float(x) for x in b],
        "best": [names[k] if k >= 0 else None for k in best],
        "crossovers": found,
    }
    B = min(problem.n_boot, max_boot)
    if B > 1:
        sample = np.repeat(np.arange(B), b.size)
        sb, _ = best_at(np.tile(avail, B), sample)
        sb = sb.reshape(B, b.size)
        result["p_best"] = {
            n: [float(v) for v in (sb == k).mean(axis=0)] for k, n in enumerate(names)
        }
        for cr in found:
            a = names.index(cr["from"]) if cr["from"] else -1
            c = names.index(cr["to"]) if cr["to"] else -1
            where = []
            for s in range(B):
                for i in range(b.size - 1):
                    if sb[s, i] == a and sb[s, i + 1] == c:
                        where.append(np.sqrt(max(b[i], 1e-300) * b[i + 1]))
                        break
            cr["probability"] = len(where) / B
            if where:
                lo, hi = np.percentile(where, _Q)
                cr["budget_low"], cr["budget_high"] = float(lo), float(hi)
        result["samples"] = B
    return result
