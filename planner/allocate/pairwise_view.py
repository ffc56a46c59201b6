"""The difference model's view in the allocation: P(in optimal plan) and the pairs'
crossings over a range of budgets.

The problem's bootstrap rows come from the joint laws: each row extrapolates every source's
curve, and how the rows differ between sources at the target is the joint laws' view. The
decision's own view of those differences is the difference model's
(:mod:`planner.laws.pairwise_view`). Each row is recalibrated to it before its optimum is
counted:

1. at the target (the compute the whole budget buys) the row's gain of each source is
   taken, and split into the row's common part (their mean) and its deviations;
2. the deviations are replaced by one posterior draw of the difference model's (in gain
   units: the metric's weight and direction), so across rows the sources' pairwise
   differences follow the difference model while each row keeps its own common level;
3. the change is a level shift of each source's whole gain curve in that row (the marginal
   utilities, hence the water-filling inside a set of sources, are the row's own), so the
   row's optimum is the best of the optima over sets of sources, each set's solved gain
   plus the shifts of the sources it funds. The sets are the whole set, each set with one
   source left out and each source alone: every set up to three sources, beyond that a
   local search around the row's own optimum (K solves instead of 2^K).

P(in optimal plan) is then the share of rows whose optimum funds each source. Where the
problem has no view (no runs, several metrics, a source the view lacks) the rows are
counted as they are.

It is not the default (``AllocationProblem.p_in_optimal_from`` is ``laws``; ``allocate
--p-in-optimal-from difference`` asks for it), because it did not hold on the one case
with a known optimum it was measured on (``bench/p_in_optimal.py``): two sources whose curves cross beyond the
measured ladder (one saturates early, the other is behind at every run but better at the
budget; each run 3 or 5 budgets, 20 noise seeds), where P(in optimal plan) of the truly
optimal source averaged 0.48 and 0.79 from the laws' rows and 0.00 and 0.02 recalibrated
(Brier 0.36 → 0.99 and 0.10 → 0.96). The difference model keeps a trend only where the
held-out runs inside the ladder show the ranking change; a crossing beyond the ladder is
invisible to it, while the laws' curvature extrapolates it.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from planner.allocate.problem import AllocationProblem
from planner.allocate.solve import evaluate_plan, objective_batch, single_gains, solve_rows
from planner.laws.pairwise_view import PairwiseView, pair_crossing
from planner.units import Unit, convert


def problem_view(problem: AllocationProblem) -> tuple[str, PairwiseView] | None:
    """The objective's metric and its difference-model view, where it holds every source
    of the problem (None otherwise: several metrics, or no view)."""
    if len(problem.weights) != 1:
        return None
    metric = next(iter(problem.weights))
    view = problem.pairwise.get(metric)
    if view is None or not set(problem.names) <= set(view.sources):
        return None
    return metric, view


def _compute_unit(problem: AllocationProblem, metric: str) -> Unit:
    for s in problem.inputs:
        f = s.fits.get(metric)
        if f is not None and f.compute_unit in {u.value for u in Unit}:
            return Unit(f.compute_unit)
    return Unit.TOKENS


def target_compute(
    problem: AllocationProblem, metric: str, budget: float
) -> tuple[float, np.ndarray]:
    """The common compute the budget buys, in the runs' compute unit, and the tokens (K,)
    at which each source reaches it.

    With compute a cost (a run's compute is its total cost) it is the budget available
    after the evaluation, and each source's tokens are what that buys it alone; with
    compute in tokens it is the geometric mean of those tokens, taken by every source.
    """
    avail = max(float(budget) - problem.setup.eval_cost, 0.0)
    tokens, _ = single_gains(objective_batch(problem, np.array([avail])))
    tokens = tokens[0]
    unit = _compute_unit(problem, metric)
    if unit is Unit.TOKENS:
        pos = tokens[tokens > 0]
        x = float(np.exp(np.mean(np.log(pos)))) if pos.size else math.nan
        caps = np.array([c.cap_tokens for c in problem.curves], dtype=float)
        return x, np.minimum(np.full(tokens.shape, x), caps)
    return convert(avail, problem.setup.unit, unit, problem.setup.rates), tokens


def gain_shifts(problem: AllocationProblem, budget: float, sample: np.ndarray) -> np.ndarray | None:
    """Per bootstrap row (of ``sample``) and source, the level shift of the source's gain
    that gives the row the difference model's deviations at the target (see the module);
    None where the problem has no view.
    """
    found = problem_view(problem)
    if found is None:
        return None
    metric, view = found
    x, ref = target_compute(problem, metric, budget)
    if not (math.isfinite(x) and x > 0 and np.all(ref > 0)):
        return None
    B = sample.shape[0]
    gains = evaluate_plan(problem, np.broadcast_to(ref, (B, ref.size)), sample)
    own = gains - gains.mean(axis=1, keepdims=True)
    dev = view.deviations(x)[:, [view.index(n) for n in problem.names]]
    dev = dev - dev.mean(axis=1, keepdims=True)
    lower = any(s.fits[metric].lower_is_better for s in problem.inputs if metric in s.fits)
    scale = problem.weights[metric] * (-1.0 if lower else 1.0)
    drawn = scale * dev[np.arange(B) % dev.shape[0]]
    shifts = drawn - own
    return np.where(np.all(np.isfinite(own), axis=1, keepdims=True), shifts, 0.0)


def _subproblem(problem: AllocationProblem, keep: Sequence[int]) -> AllocationProblem:
    pick = list(keep)
    inputs = problem.inputs
    return dataclasses.replace(
        problem,
        names=tuple(problem.names[k] for k in pick),
        curves=tuple(problem.curves[k] for k in pick),
        guard_curves=tuple(tuple(g[k] for k in pick) for g in problem.guard_curves),
        x_max_tokens=tuple(problem.x_max_tokens[k] for k in pick),
        inputs=tuple(inputs[k] for k in pick) if len(inputs) == len(problem.names) else inputs,
    )


def _tol(v: np.ndarray) -> np.ndarray:
    return 1e-12 * np.maximum(1.0, np.abs(v))


def funded_with_shifts(
    problem: AllocationProblem,
    budget: float,
    sample: np.ndarray,
    shifts: np.ndarray,
    boot_tokens: np.ndarray,
) -> np.ndarray:
    """(B, K) whether each row's optimum funds each source, with each source's gain curve
    shifted by ``shifts`` (B, K) wherever it is funded (see the module).

    The sets compared are the whole set (the rows' own optima, ``boot_tokens``), each set
    with one source left out, and each source alone (its whole-budget plan): every set up
    to three sources, a local search around the row's optimum beyond. A set with a source
    left out is solved only for the rows that fund that source and whose shift lowers it,
    and only where it could win: its unshifted optimum is at most the whole set's, so its
    score is at most that plus its sources' positive shifts.
    """
    B, K = shifts.shape
    used = boot_tokens > 0
    ceiling = evaluate_plan(problem, boot_tokens, sample).sum(axis=1)
    ceiling = np.where(np.isfinite(ceiling), np.maximum(ceiling, 0.0), np.inf)
    best = np.where(used.any(axis=1), ceiling + np.sum(np.where(used, shifts, 0.0), axis=1), 0.0)
    funded = used.copy()
    empty = best < 0  # spending nothing (the control anneal) beats a plan shifted below it
    best[empty], funded[empty] = 0.0, False

    def consider(rows: np.ndarray, cols: list[int], tokens: np.ndarray, gain: np.ndarray, ok):
        got = tokens > 0
        score = gain + np.sum(np.where(got, shifts[np.ix_(rows, cols)], 0.0), axis=1)
        better = ok & np.isfinite(score) & (score > best[rows] + _tol(best[rows]))
        win = rows[better]
        best[win] = score[better]
        funded[win] = False
        funded[np.ix_(win, cols)] = got[better]

    if K > 2:
        for left_out in range(K):
            cols = [k for k in range(K) if k != left_out]
            bound = ceiling + np.sum(np.maximum(shifts[:, cols], 0.0), axis=1)
            # leaving out a source the row does not fund, or one the shift does not hurt,
            # is not tried: the row's own optimum already weighs the rest
            hurt = used[:, left_out] & (shifts[:, left_out] < 0)
            rows = np.flatnonzero(hurt & (bound > best + _tol(best)))
            if rows.size == 0:
                continue
            sub = _subproblem(problem, cols)
            sol = solve_rows(sub, np.full(rows.size, float(budget)), sample[rows])
            consider(rows, cols, sol.sol.tokens, sol.sol.total, sol.sol.feasible & sol.guard_ok)
    # each source alone, with the whole budget (as the best single source is found)
    avail = np.full(B, max(float(budget) - problem.setup.eval_cost, 0.0))
    alone_tokens, alone_gain = single_gains(objective_batch(problem, avail, sample))
    for k in range(K):
        if problem.guards:  # the guard-rails bind a source alone too: solve it
            rows = np.arange(B)
            sol = solve_rows(_subproblem(problem, [k]), np.full(B, float(budget)), sample)
            consider(rows, [k], sol.sol.tokens, sol.sol.total, sol.sol.feasible & sol.guard_ok)
        else:
            t = alone_tokens[:, k : k + 1]
            consider(np.arange(B), [k], t, alone_gain[:, k], np.ones(B, dtype=bool))
    return funded


def p_in_optimal(
    problem: AllocationProblem, budget: float, boot_tokens: np.ndarray, sample: np.ndarray
) -> np.ndarray:
    """P(in optimal plan) per source (K,): the share of bootstrap rows whose optimum funds
    it, each row recalibrated to the difference model's pairwise view where the problem
    asks for it (``p_in_optimal_from="difference"``) and has one (see the module), else as
    solved (``boot_tokens`` (B, K) > 0)."""
    if problem.p_in_optimal_from != "difference":
        return (boot_tokens > 0).mean(axis=0)
    shifts = gain_shifts(problem, budget, sample)
    if shifts is None:
        return (boot_tokens > 0).mean(axis=0)
    return funded_with_shifts(problem, budget, sample, shifts, boot_tokens).mean(axis=0)


@dataclass(frozen=True, slots=True)
class BudgetPairCrossing:
    """Where the difference model says two sources' values cross over a range of budgets.

    Attributes:
        a, b: the sources.
        low, high: the computes (the runs' unit) the range of budgets spans.
        probability: share of the difference model's draws of a − b that change sign there.
        compute: where its mean does (None when it does not).
        compute_low, compute_high: the 5th and 95th percentiles of where the draws that
            cross do (None when none does).
        unit: the runs' compute unit.
    """

    a: str
    b: str
    low: float
    high: float
    probability: float
    compute: float | None
    compute_low: float | None
    compute_high: float | None
    unit: str

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


def budget_pair_crossings(
    problem: AllocationProblem, budgets: Sequence[float]
) -> list[BudgetPairCrossing]:
    """For every pair of sources, the difference model's crossing over the computes the
    range of budgets buys (see :func:`target_compute`); empty without a view."""
    found = problem_view(problem)
    if found is None or len(budgets) < 2:
        return []
    metric, view = found
    lo, _ = target_compute(problem, metric, float(min(budgets)))
    hi, _ = target_compute(problem, metric, float(max(budgets)))
    if not (math.isfinite(lo) and math.isfinite(hi) and 0 < lo < hi):
        return []
    unit = _compute_unit(problem, metric).value
    out = []
    for a, b in itertools.combinations(problem.names, 2):
        c = pair_crossing(view, a, b, lo, hi)
        q = np.percentile(c.samples, (5.0, 95.0)) if c.samples.size else (None, None)
        out.append(
            BudgetPairCrossing(
                a,
                b,
                lo,
                hi,
                c.probability,
                c.compute if math.isfinite(c.compute) else None,
                None if q[0] is None else float(q[0]),
                None if q[1] is None else float(q[1]),
                unit,
            )
        )
    return out
