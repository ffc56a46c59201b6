"""Designing a sweep over the registered sources and storing it as an experiment.

What ``annealplan design`` and the TUI's Jobs screen both do: parse the budget and the
model size, pick the registered sources, price them through their cost models, call
:func:`planner.design.sweep.design_sweep` and save the specs with ``store.save_experiment``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from planner.design.sweep import Design
from planner.units import Quantity, Rates

#: what to do when no source is registered, in the CLI's words (the TUI passes its own)
NO_SOURCES_HINT = "add some with `annealplan sources add` or pass --sources"


def design_stored_sweep(
    store: Any,
    registry: Any,
    rates: Rates,
    *,
    budget: str,
    model_params: str,
    sources: Sequence[str] | None = None,
    fraction: float = 0.05,
    points: int = 4,
    seeds: int = 1,
    span: float = 10.0,
    replay_fraction: float = 0.7,
    eval_cost: str | None = None,
    experiment: str | None = None,
    no_sources_hint: str = NO_SOURCES_HINT,
    repeat_top: bool = True,
) -> tuple[str, Quantity, Design]:
    """Design the first sweep for a target ``budget`` and store it.

    Args:
        store: the open store (or a cursor of one).
        registry: the plugin registry (cost models of the sources).
        rates: FLOPs and dollars per GPU-hour.
        budget: the final anneal's budget, e.g. ``2000gpuh`` (a cost, not tokens).
        model_params: the annealing model's size N, e.g. ``135M``.
        sources: the sources to sweep (None: every registered source).
        fraction, points, seeds, span, replay_fraction, repeat_top: as :func:`design_sweep`.
        eval_cost: one run's evaluation cost, e.g. ``0.5gpuh``.
        experiment: the experiment's name (default ``sweep-<budget>``).
        no_sources_hint: what the error says to do when no source is registered.

    Returns:
        The experiment's name, the parsed budget and the design.

    Raises:
        SolveError: a budget in tokens or no source; StoreError: an unknown source.
    """
    from planner.allocate.problem import CostSetup
    from planner.design.sweep import DesignSource, design_sweep
    from planner.errors import SolveError
    from planner.units import convert, parse_quantity, parse_tokens

    q = parse_quantity(budget)
    if q.unit.value == "tokens":
        raise SolveError("a budget is a cost: write it in GPU-hours, FLOPs or USD (e.g. 2000gpuh)")
    registered = {s.name: s for s in store.sources()}
    names = list(sources) if sources is not None else sorted(registered)
    if not names:
        raise SolveError(f"no sources registered; {no_sources_hint}")
    chosen = []
    for n in names:
        src = registered.get(n) or store.source(n)  # StoreError with "did you mean"
        chosen.append(DesignSource(n, registry.cost_model_for(src), src.cap_tokens))
    ec = 0.0
    if eval_cost:
        e = parse_quantity(eval_cost)
        ec = convert(e.value, e.unit, q.unit, rates)
    setup = CostSetup(q.unit, parse_tokens(model_params), rates)
    name = experiment or f"sweep-{budget}".replace(" ", "")
    d = design_sweep(
        chosen,
        setup,
        q.value,
        fraction=fraction,
        points=points,
        seeds=seeds,
        span=span,
        replay_fraction=replay_fraction,
        eval_cost=ec,
        experiment=name,
        repeat_top=repeat_top,
    )
    store.save_experiment(name, list(d.specs), d.meta)
    return name, q, d


@dataclass(frozen=True)
class NextRuns:
    """What ``annealplan next`` found.

    Attributes:
        state: the decision state now (P(wrong allocation) and the draws' plans).
        recommendations: the best runs, best first.
        noise: per source, one run's noise around its law.
        beliefs: P(a beats b) at the budget for every pair of sources.
        targeted: the sources of the undecided pairs (0.4 ≤ P ≤ 0.6) the candidate runs
            were limited to; empty when no pair is undecided (every source's runs weighed).
        extensions: the runs that would extend the trust region of the sources the plan
            holds at their trust limit (:class:`planner.design.trust.Extension`).
    """

    state: Any
    recommendations: list[Any]
    noise: dict[str, float]
    beliefs: tuple[Any, ...] = ()
    targeted: tuple[str, ...] = ()
    extensions: tuple[Any, ...] = ()


def recommend_runs(
    store: Any,
    registry: Any,
    rates: Rates,
    budget: Quantity,
    options: Any,
    *,
    replay_fraction: float = 0.7,
    tol: float = 0.05,
    top: int = 5,
    plan: Any = None,
) -> NextRuns:
    """``annealplan next``: the runs that most reduce P(wrong allocation) per unit of cost.

    Where some pairs of sources are undecided at the budget (P(a beats b) between 0.4 and
    0.6), the candidate runs are those of the sources in those pairs: measuring them is
    what settles the decision; where none is, runs of every source are weighed. Beside
    them, for each source held at its trust limit (the ``plan``'s ``trust_limited``, else
    found by solving under ``options.max_extrapolation``), the larger run that would
    extend its trust region (:mod:`planner.design.trust`).

    Args:
        store, registry, rates: as for :func:`planner.allocate.session.load_for`.
        budget: the target budget.
        options: a :class:`planner.allocate.session.ProblemOptions`.
        replay_fraction: replay share of the candidate runs (for their cost).
        tol: a plan is wrong when it loses more than this share of the best gain.
        top: how many recommendations to return.
        plan: the latest stored plan (its trust multiple and trust-limited sources).
    """
    from planner.allocate.loader import noise_levels
    from planner.allocate.session import load_for
    from planner.design.voi import decision_state, recommend_next

    loaded = load_for(store, registry, rates, budget.unit, options)
    problem = loaded.problem
    noise = noise_levels(problem, loaded.observations)
    state = decision_state(problem, budget.value, tol=tol)
    beliefs, targeted, candidates = undecided_candidates(problem, budget.value)
    recs = recommend_next(
        problem,
        budget.value,
        candidates,
        noise,
        replay_fraction=replay_fraction,
        tol=tol,
        state=state,
    )[:top]
    extensions = _extensions(store, problem, budget.value, options, plan, replay_fraction)
    return NextRuns(state, recs, noise, beliefs, targeted, extensions)


def _extensions(
    store: Any, problem: Any, budget: float, options: Any, plan: Any, replay_fraction: float
) -> tuple[Any, ...]:
    """The trust-region extensions ``next`` proposes (see :func:`recommend_runs`)."""
    from planner.design.trust import trust_extensions, trust_limited_sources

    multiple = options.max_extrapolation or getattr(plan, "trust_multiple", None)
    if not multiple:
        return ()
    limited = tuple(getattr(plan, "trust_limited", ()) or ())
    if not limited and options.max_extrapolation:
        limited = trust_limited_sources(problem, budget, multiple=options.max_extrapolation)
    if not limited:
        return ()
    fits = [f for s in problem.inputs for f in s.fits.values()]
    # as the loader reads them: a run's tokens, else its compute where compute is tokens
    in_tokens = all(f.compute_unit in (None, "tokens") for f in fits)
    measured: dict[str, list[float]] = {}
    for study in sorted({f.study for f in fits}):
        for r in store.runs(study=study):
            tokens = r.tokens or (r.compute if in_tokens else None)
            if r.source in problem.names and tokens:
                measured.setdefault(r.source, []).append(float(tokens))
    for k, name in enumerate(problem.names):
        xm = problem.x_max_tokens[k]
        if name not in measured and xm == xm and xm > 0:  # no runs stored: the fits' largest
            measured[name] = [float(xm)]
    return tuple(
        trust_extensions(
            problem,
            budget,
            limited,
            measured,
            multiple=float(multiple),
            replay_fraction=replay_fraction,
        )
    )


def undecided_candidates(problem: Any, budget: float) -> tuple[tuple, tuple[str, ...], list]:
    """The candidate runs ``next`` weighs: those of the sources in undecided pairs.

    Returns:
        (P(a beats b) at ``budget`` for every pair, the sources of the pairs between 0.4
        and 0.6, and the candidate runs: of those sources only, or of every source when no
        pair is undecided).
    """
    from planner.allocate.beliefs import budget_beliefs
    from planner.design.voi import default_candidates

    beliefs = tuple(budget_beliefs(problem, budget))
    targeted = tuple(sorted({s for b in beliefs if b.undecided for s in (b.a, b.b)}))
    candidates = default_candidates(problem, budget)
    if targeted:
        candidates = [c for c in candidates if c.source in targeted]
    return beliefs, targeted, candidates
