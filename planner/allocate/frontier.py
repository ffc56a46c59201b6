"""Plans across budgets: the frontier (the optimal gain with its band at each budget) and the
crossovers (budgets at which the best single source changes), vectorised over budgets and
bootstrap samples."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from planner.allocate.plan import QUANTILES, percentile_band
from planner.allocate.problem import AllocationProblem
from planner.allocate.solve import objective_batch, single_gains, solve_combined
from planner.domain import BudgetCrossover, CrossoverScan, FrontierPoint

_CROSSOVER_BISECT = 40


def frontier(
    problem: AllocationProblem, budgets: Sequence[float], *, max_boot: int = 200
) -> list[FrontierPoint]:
    """The optimal plan and its gain at each budget, with the best single source beside it."""
    b = np.asarray(budgets, dtype=float)
    rule = problem.rule
    pt = solve_combined(problem, b, rule=rule)
    avail = np.maximum(b - problem.setup.eval_cost, 0.0)
    _, gs = single_gains(objective_batch(problem, avail))
    lows = highs = np.full(b.size, np.nan)
    B = min(problem.n_boot, max_boot)
    if B > 1:
        sample = np.repeat(np.arange(B), b.size)
        rows = solve_combined(problem, np.tile(b, B), sample, rule=rule)
        lows, highs = percentile_band(rows.sol.total.reshape(B, b.size))
    out = []
    for i, bud in enumerate(b):
        kb = int(np.argmax(gs[i]))
        out.append(
            FrontierPoint(
                budget=float(bud),
                gain=float(pt.sol.total[i]),
                gain_low=float(lows[i]),
                gain_high=float(highs[i]),
                tokens={n: float(pt.sol.tokens[i, k]) for k, n in enumerate(problem.names)},
                best_single=problem.names[kb] if np.isfinite(gs[i, kb]) else None,
                best_single_gain=float(gs[i, kb]),
                success=bool(pt.sol.feasible[i] and pt.sol.total[i] > 0 and pt.guard_ok[i]),
            )
        )
    return out


def crossovers(
    problem: AllocationProblem, budgets: Sequence[float], *, max_boot: int = 200
) -> CrossoverScan:
    """Budgets at which the best single source changes, with probabilities.

    The best single source at a budget is the one whose whole-budget plan gains most. The
    point laws give the crossover budgets (refined by bisection between grid budgets); the
    bootstrap samples give, per budget, the probability that each source is the best, and per
    crossover the share of samples that cross between the same two sources in the range, with
    the quantiles of where they cross.
    """
    b = np.sort(np.asarray(budgets, dtype=float))
    avail = np.maximum(b - problem.setup.eval_cost, 0.0)
    names = problem.names

    def best_at(av: np.ndarray, sample: np.ndarray | None) -> np.ndarray:
        _, gs = single_gains(objective_batch(problem, av, sample))
        return np.where(np.max(gs, axis=1) > 0, np.argmax(gs, axis=1), -1)  # -1: control

    def name(k: int) -> str | None:
        return names[k] if k >= 0 else None

    best = best_at(avail, None)
    points = []  # (budget, best below, best above)
    for i in range(b.size - 1):
        if best[i] != best[i + 1]:
            lo, hi = avail[i], avail[i + 1]
            a, c = best[i], best[i + 1]
            for _ in range(_CROSSOVER_BISECT):
                mid = np.sqrt(lo * hi) if lo > 0 else 0.5 * (lo + hi)
                bm = best_at(np.array([mid]), None)
                lo, hi = (mid, hi) if bm[0] == a else (lo, mid)
            points.append((float(np.sqrt(lo * hi) + problem.setup.eval_cost), a, c))
    scan = CrossoverScan(
        budgets=tuple(float(x) for x in b),
        best=tuple(name(k) for k in best),
        crossovers=tuple(BudgetCrossover(at, name(a), name(c)) for at, a, c in points),
    )
    B = min(problem.n_boot, max_boot)
    if B <= 1:
        return scan
    sample = np.repeat(np.arange(B), b.size)
    sb = best_at(np.tile(avail, B), sample).reshape(B, b.size)
    return CrossoverScan(
        budgets=scan.budgets,
        best=scan.best,
        crossovers=tuple(
            _sampled(cr, a, c, sb, b) for cr, (_, a, c) in zip(scan.crossovers, points, strict=True)
        ),
        p_best={n: tuple(float(v) for v in (sb == k).mean(axis=0)) for k, n in enumerate(names)},
        samples=B,
    )


def _sampled(
    cr: BudgetCrossover, a: int, c: int, sb: np.ndarray, budgets: np.ndarray
) -> BudgetCrossover:
    """``cr`` with the share of samples (rows of ``sb``, the best source per budget) that
    change from ``a`` to ``c`` in the range, and the quantiles of where they first do."""
    where = []
    for s in range(sb.shape[0]):
        for i in range(budgets.size - 1):
            if sb[s, i] == a and sb[s, i + 1] == c:
                where.append(np.sqrt(max(budgets[i], 1e-300) * budgets[i + 1]))
                break
    low = high = None
    if where:
        lo, hi = np.percentile(where, QUANTILES)
        low, high = float(lo), float(hi)
    return BudgetCrossover(
        cr.budget, cr.before, cr.after, len(where) / sb.shape[0], budget_low=low, budget_high=high
    )
