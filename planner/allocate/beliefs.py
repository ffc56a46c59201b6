"""How sure the fits are that one source beats another at a budget.

For every pair of sources, P(a beats b at a budget): the share of the problem's bootstrap
draws in which source a, given the whole budget alone, gains more over the control anneal
than source b would. A pair between 0.4 and 0.6 is undecided: more runs of those two
sources are what would settle it, and ``annealplan next`` weighs runs of them first.
"""

from __future__ import annotations

import itertools

import numpy as np

from planner.allocate.problem import AllocationProblem
from planner.allocate.solve import Batch, single_gains
from planner.laws.decision import PairBelief


def budget_beliefs(
    problem: AllocationProblem, budget: float, *, max_boot: int = 200
) -> list[PairBelief]:
    """P(a beats b) at ``budget`` for every pair of the problem's sources.

    Args:
        problem: the allocation problem (its fits' bootstrap rows are the draws).
        budget: the budget, in the problem's unit (the evaluation's cost is paid first).
        max_boot: draws used at most.

    Returns:
        One belief per pair (``difference`` is the point laws' gain of a minus b); empty
        when the fits carry fewer than two bootstrap rows.
    """
    B = min(problem.n_boot, max_boot)
    if B < 2:
        return []
    avail = max(float(budget) - problem.setup.eval_cost, 0.0)

    def gains(rows: int, sample: np.ndarray | None) -> np.ndarray:
        # each source on its own, without the guard rails' multipliers (as crossovers)
        th = problem.objective_thetas(rows, sample)
        _, gs = single_gains(Batch(problem.curves, th, np.full(rows, avail)))
        return gs

    draws = gains(B, np.arange(B))
    point = gains(1, None)[0]
    out = []
    for a, b in itertools.combinations(range(len(problem.names)), 2):
        d = draws[:, a] - draws[:, b]
        ok = np.isfinite(d)
        p = float((np.sum(d[ok] > 0) + 0.5 * np.sum(d[ok] == 0)) / ok.sum()) if ok.any() else 0.5
        out.append(
            PairBelief(
                problem.names[a], problem.names[b], float(budget), p, float(point[a] - point[b])
            )
        )
    return out
