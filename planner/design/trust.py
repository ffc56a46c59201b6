"""Runs that extend the trust region: what ``annealplan next`` proposes for a source the
plan holds at its trust limit.

A plan buys no source past ``max_extrapolation`` times its largest measured budget (the law
is not trusted further; see :func:`planner.allocate.loader.load_problem`). A source held at
that limit is one the budget would buy more of: the decision is not uncertain between
sources there, the law is untested where the plan wants to go. The run that settles it is a
larger run of that source: the next step of its ladder above its largest measured budget
(the ratio between its two largest runs), as large as the budget allows.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from planner.allocate.problem import AllocationProblem
from planner.allocate.solve import solve_rows
from planner.design.voi import run_cost

#: the ladder step assumed where a source has a single measured budget (a doubling)
DEFAULT_STEP = 2.0
#: bounds on a ladder step read from the runs
STEP_BOUNDS = (1.25, 10.0)


@dataclass(frozen=True, slots=True)
class Extension:
    """A run that extends a trust-limited source's trust region.

    Attributes:
        source: the source; tokens: the run's source tokens; cost: what it costs, in the
            problem's unit.
        largest_tokens: its largest measured budget now.
        limit_tokens: the most the plan may buy of it now (the trust multiple × largest).
        new_limit_tokens: the most it could buy once this run is measured.
        reason: why, in words.
    """

    source: str
    tokens: float
    cost: float
    largest_tokens: float
    limit_tokens: float
    new_limit_tokens: float
    reason: str

    def to_dict(self) -> dict:
        return {
            "source": self.source,
            "tokens": self.tokens,
            "cost": self.cost,
            "largest_tokens": self.largest_tokens,
            "limit_tokens": self.limit_tokens,
            "new_limit_tokens": self.new_limit_tokens,
            "reason": self.reason,
        }


def trust_limited_sources(
    problem: AllocationProblem, budget: float, *, multiple: float | None
) -> tuple[str, ...]:
    """The sources the point plan at ``budget`` holds at their trust limit: bought up to a
    cap that is the trust region's (below the source's own supply cap).

    Args:
        problem: the problem, built with the trust region (its curves' caps include it).
        budget: the target budget.
        multiple: the trust multiple (None: no trust region, no source is limited).
    """
    if not multiple:
        return ()
    tokens = solve_rows(problem, np.array([float(budget)])).sol.tokens[0]
    supply = {s.name: s.cap_tokens for s in problem.inputs}
    out = []
    for k, name in enumerate(problem.names):
        cap = problem.curves[k].cap_tokens
        own = supply.get(name)
        own = math.inf if own is None else float(own)
        if math.isfinite(cap) and cap < own * (1 - 1e-9) and tokens[k] >= cap * (1 - 1e-9):
            out.append(name)
    return tuple(out)


def ladder_step(measured: Sequence[float]) -> float:
    """The ratio between a source's two largest distinct measured budgets (bounded by
    :data:`STEP_BOUNDS`; :data:`DEFAULT_STEP` with a single one)."""
    ux = np.unique(np.asarray([t for t in measured if t and t > 0], dtype=float))
    if ux.size < 2:
        return DEFAULT_STEP
    return float(np.clip(ux[-1] / ux[-2], *STEP_BOUNDS))


def trust_extensions(
    problem: AllocationProblem,
    budget: float,
    limited: Sequence[str],
    measured: Mapping[str, Sequence[float]],
    *,
    multiple: float,
    replay_fraction: float,
) -> list[Extension]:
    """For each trust-limited source, the run at the next step of its ladder above its
    largest measured budget, shrunk to what ``budget`` can pay for (none where the budget
    cannot pay for a run larger than the largest measured one).

    Args:
        problem: the allocation problem (its costs price the run).
        budget: the target budget, in the problem's unit.
        limited: the trust-limited sources (a plan's ``trust_limited``, or
            :func:`trust_limited_sources`).
        measured: per source, the token budgets of its runs.
        multiple: the trust multiple.
        replay_fraction: replay share of the run (for its cost).
    """
    out = []
    for name in limited:
        if name not in problem.names or not measured.get(name):
            continue
        largest = float(max(measured[name]))
        want = largest * ladder_step(measured[name])

        def cost(tokens: float, name: str = name) -> float:
            return run_cost(problem, name, tokens, replay_fraction=replay_fraction)

        tokens = want
        if not cost(want) <= budget:
            lo, hi = largest, want
            if not cost(lo * (1 + 1e-6)) <= budget:
                continue
            for _ in range(60):  # the largest run the budget pays for (cost rises with tokens)
                mid = math.sqrt(lo * hi)
                lo, hi = (mid, hi) if cost(mid) <= budget else (lo, mid)
            tokens = lo
        limit, new_limit = multiple * largest, multiple * tokens
        reason = (
            f"extends the trust region of {name}: the plan holds it at {multiple:g}× its "
            f"largest run ({limit:.3g} of {largest:.3g} tokens); a run at {tokens:.3g} tokens "
            f"lets it buy up to {new_limit:.3g}"
        )
        out.append(Extension(name, tokens, cost(tokens), largest, limit, new_limit, reason))
    return out
