"""From the options a person types to a problem, a plan and a frontier.

``annealplan allocate``, ``frontier``, ``crossovers`` and ``next`` and the TUI's Allocation
screen all start from text (a budget like ``2000gpuh``, ``--model-params 135M``, guards like
``general_acc>=-0.01``); this module parses it once and builds the problem with
:func:`planner.allocate.loader.load_problem`, so every face solves the same problem.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from planner.allocate.loader import Loaded, load_problem
from planner.allocate.problem import parse_guard, parse_weights
from planner.domain import Plan, ProblemOptions
from planner.errors import SolveError
from planner.units import Quantity, Rates, Unit, convert, parse_quantity, parse_tokens


def load_for(
    store: Any, registry: Any, rates: Rates, unit: Unit, options: ProblemOptions
) -> Loaded:
    """Build the allocation problem for budgets in ``unit`` from the store.

    Raises:
        SolveError: a budget in tokens, nothing fitted, an ambiguous metric, a missing
            control or model size.
        UnitError: an unreadable quantity.
    """
    if unit is Unit.TOKENS:
        raise SolveError("a budget is a cost: write it in GPU-hours, FLOPs or USD (e.g. 2000gpuh)")
    ec = 0.0
    if options.eval_cost:
        q = parse_quantity(options.eval_cost)
        ec = convert(q.value, q.unit, unit, rates)
    sources = options.sources
    return load_problem(
        store,
        registry,
        unit=unit,
        rates=rates,
        metric=options.metric,
        weights=parse_weights(options.weights) if options.weights else None,
        guards=[parse_guard(g) for g in options.guards],
        model_params=parse_tokens(options.model_params) if options.model_params else None,
        control=options.control,
        study=options.study,
        sources=[s.strip() for s in sources.split(",") if s.strip()] if sources else None,
        replay_fraction=options.replay_fraction,
        eval_cost=ec,
        max_extrapolation=options.max_extrapolation,
        combination=options.combination,
        p_in_optimal_from=options.p_in_optimal_from,
    )


def budget_range(budget_from: str, budget_to: str, points: int) -> tuple[Unit, np.ndarray]:
    """``points`` budgets spaced geometrically from ``budget_from`` to ``budget_to``, in
    the first one's unit.

    Raises:
        SolveError: not ``0 < from < to`` or fewer than two points.
    """
    a, b = parse_quantity(budget_from), parse_quantity(budget_to)
    b_val = convert(b.value, b.unit, a.unit) if a.unit is not b.unit else b.value
    if not (0 < a.value < b_val) or points < 2:
        raise SolveError(
            "give 0 < --from < --to and --points ≥ 2, e.g. --from 10gpuh --to 10000gpuh"
        )
    return a.unit, np.geomspace(a.value, b_val, points)


def range_problem(
    store: Any,
    registry: Any,
    rates: Rates,
    budget_from: str,
    budget_to: str,
    points: int,
    options: ProblemOptions,
) -> tuple[Unit, np.ndarray, Loaded]:
    """What ``frontier`` and ``crossovers`` start from: the budgets and the problem."""
    unit, budgets = budget_range(budget_from, budget_to, points)
    return unit, budgets, load_for(store, registry, rates, unit, options)


def plan_for(
    loaded: Loaded,
    budget: float,
    *,
    micro_fraction: float = 0.05,
    options: ProblemOptions | None = None,
) -> Plan:
    """The plan for ``budget`` (in the problem's unit), with the loader's notes appended.

    The options it was solved with are kept in ``plan.options``, so whoever shows the
    stored plan later (its frontier, a report) rebuilds the same problem.
    """
    from planner.allocate.plan import make_plan

    plan = make_plan(
        loaded.problem, budget, micro_fraction=micro_fraction, mixed_runs=loaded.mixed_runs
    )
    return replace(plan, notes=plan.notes + loaded.notes, options=options)


def options_of(plan: Plan, **fallback: Any) -> ProblemOptions:
    """The options a stored plan was solved with (``fallback`` for a plan that has none)."""
    return plan.options if plan.options is not None else ProblemOptions(**fallback)


def solve_budget(
    store: Any,
    registry: Any,
    rates: Rates,
    budget: str | Quantity,
    options: ProblemOptions,
    *,
    micro_fraction: float = 0.05,
    save: bool = True,
) -> tuple[Plan, str | None, Loaded]:
    """``annealplan allocate --budget B``: load the problem, solve it, store the plan.

    Returns:
        The plan, its stored id (None when ``save`` is False) and the loaded problem.
    """
    q = parse_quantity(budget) if isinstance(budget, str) else budget
    loaded = load_for(store, registry, rates, q.unit, options)
    plan = plan_for(loaded, q.value, micro_fraction=micro_fraction, options=options)
    plan_id = store.save_plan(plan, loaded.problem.fit_ids) if save else None
    return plan, plan_id, loaded
