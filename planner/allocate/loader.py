"""Assemble an allocation problem from the store and the plugin registry (for the CLI/TUI).

What it reads: the latest successful fits per (source, metric) of a study, the registered
sources (cost model and cap; a source with fits but not registered is free and uncapped),
the control anneal's runs (source ``control``, empty or missing) and the study's compute
unit. Mixed runs (source ``a+b`` or ``a@0.7+b@0.3``) are never fitted as sources; they feed
the separability check.
"""

from __future__ import annotations

import dataclasses
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import sympy

from planner.allocate.combine import RULES, CombinationRule, additive_rule, fit_interaction
from planner.allocate.mixture import parse_mixture
from planner.allocate.problem import (
    AllocationProblem,
    Control,
    CostSetup,
    Guard,
    SourceInput,
    build_problem,
    control_from_values,
)
from planner.allocate.solve import evaluate_plan
from planner.domain import CONTROL_SOURCE, DEFAULT_STUDY, LawFit, Observation, Run, is_control
from planner.errors import AnnealplanError, SolveError
from planner.units import Rates, Unit

#: the trust region's default: no source past this multiple of its largest measured budget
DEFAULT_TRUST_MULTIPLE = 10.0


@dataclass(frozen=True)
class Loaded:
    """A problem plus what the CLI reports alongside it."""

    problem: AllocationProblem
    notes: tuple[str, ...]
    mixed_runs: tuple[tuple[str, float, float], ...]
    observations: tuple[Any, ...]


def law_families(registry: Any) -> dict[str, Any]:
    """Built-in law families (when the laws room provides them) plus the plugins' ones."""
    out: dict[str, Any] = {}
    try:
        from planner.laws.families import builtin_families

        out.update(builtin_families())
    except ImportError:
        pass
    if registry is not None:
        out.update(dict(getattr(registry, "law_families", {}) or {}))
    return out


def pick_metric(metrics: Sequence[str], wanted: str | None) -> str:
    """The metric to optimise: ``wanted``, or the only fitted one.

    Raises:
        SolveError: no fits, an unknown metric, or several metrics and none chosen.
    """
    if not metrics:
        raise SolveError("no fitted laws in the store; import runs and run `annealplan fit` first")
    if wanted:
        if wanted not in metrics:
            raise SolveError(f"no fits for metric {wanted!r}; fitted metrics: {', '.join(metrics)}")
        return wanted
    if len(metrics) == 1:
        return metrics[0]
    raise SolveError(
        f"several metrics are fitted ({', '.join(metrics)}); choose one with --metric "
        "or weigh several with --weights"
    )


def load_problem(
    store: Any,
    registry: Any,
    *,
    unit: Unit,
    rates: Rates,
    metric: str | None = None,
    weights: Mapping[str, float] | None = None,
    guards: Sequence[Guard] = (),
    model_params: float | None = None,
    control: float | None = None,
    study: str | None = None,
    sources: Sequence[str] | None = None,
    replay_fraction: float = 0.0,
    eval_cost: float = 0.0,
    max_extrapolation: float | None = None,
    combination: str = "coverage",
    p_in_optimal_from: str = "laws",
) -> Loaded:
    """Build the allocation problem of a study from the store.

    Every source is capped at ``max_extrapolation`` (default :data:`DEFAULT_TRUST_MULTIPLE`)
    times its largest measured budget: the trust region. Single-source gains combine by
    ``combination`` (see :mod:`planner.allocate.combine`); the coverage rule's interaction
    is fitted from the study's measured mixtures when it has any.

    Raises:
        SolveError: nothing fitted, ambiguous metric, missing control or model size.
    """
    notes: list[str] = []
    study, by_source = _latest_fits(store, study)
    metrics = sorted({m for d in by_source.values() for m in d})
    weights, needed = _objective(metrics, metric, weights, guards)
    names = _chosen_sources(by_source, needed, sources, notes)
    registered = {s.name: s for s in store.sources()}
    obs = store.observations(study=study)
    runs = store.runs(study=study)
    if model_params is None:
        model_params = _model_size(runs)
    setup = CostSetup(unit, float(model_params), rates, replay_fraction, eval_cost)
    inputs = _source_inputs(names, by_source, registered, registry, notes)
    controls = _controls(inputs, needed, weights, obs, control, notes)
    units = store.compute_units(study) if hasattr(store, "compute_units") else {}
    cu = units.get(study) if study else None
    compute_units: dict[str, Unit] = {}
    for m in needed:
        fit_unit = next(
            (f.compute_unit for s in inputs for mm, f in s.fits.items() if mm == m),
            None,
        )
        u = fit_unit or cu
        if u in {x.value for x in Unit}:
            compute_units[m] = Unit(u)
        else:
            compute_units[m] = Unit.TOKENS
    if cu is None:
        notes.append(
            "the runs' compute unit is unknown (imported table): compute is read as tokens"
        )
    extra_values = {"N": float(model_params), "params": float(model_params)}
    problem = build_problem(
        inputs,
        law_families(registry),
        controls,
        setup,
        weights=weights,
        guards=guards,
        compute_units=compute_units,
        extra_values=extra_values,
    )
    trust = DEFAULT_TRUST_MULTIPLE if max_extrapolation is None else float(max_extrapolation)
    if not trust > 1.0:
        raise SolveError(
            f"the trust multiple must be above 1 (got {trust:g}): it caps each source at that "
            "many times its largest measured budget"
        )
    problem = _with_min_tokens(problem, runs, compute_units.get(next(iter(weights))), trust)
    problem = _with_pairwise(problem, obs, notes)
    if p_in_optimal_from != "laws":
        problem = dataclasses.replace(problem, p_in_optimal_from=p_in_optimal_from)
    notes.append(
        f"trust region: no source is bought past {trust:g}× its largest measured budget "
        "(the laws are not trusted further)"
    )
    main = next(iter(weights))
    mixed = _mixed_runs(obs, runs, main, compute_units.get(main) is Unit.TOKENS)
    rule = combination_for(problem, obs, combination)
    measured = _measured_mixtures(store, study, obs, mixed, main)
    if rule.bounded and measured:
        rule = fit_mixtures(problem, rule, measured)
    elif rule.why_additive:
        notes.append(f"gains are added across sources: {rule.why_additive}")
    if problem.p_in_optimal_from == "difference" and rule.bounded:
        # the recalibration shifts each source's gain by a level, which only adds up when
        # gains add; under the coverage rule it would count the shifts wrongly
        raise SolveError(
            "P(in optimal plan) from the difference model needs gains that add: pass "
            "--combination additive with --p-in-optimal-from difference"
        )
    problem = dataclasses.replace(problem, combination=rule)
    return Loaded(problem, tuple(notes), mixed, tuple(obs))


def _latest_fits(
    store: Any, study: str | None
) -> tuple[str | None, dict[str, dict[str, tuple[str, LawFit]]]]:
    """The study (the only one, or ``default`` among several) and its successful fits by
    source and metric; the control's and mixed runs' fits are left out.

    Raises:
        SolveError: fits from several studies, none of them ``default``, and none chosen.
    """
    fits = [(i, f) for i, f in store.fits(study=study) if f.success]
    if study is None:
        studies = sorted({f.study for _, f in fits})
        if len(studies) > 1:
            study = DEFAULT_STUDY if DEFAULT_STUDY in studies else None
            if study is None:
                raise SolveError(
                    f"fits from several studies ({', '.join(studies)}); choose one with --study"
                )
            fits = [(i, f) for i, f in fits if f.study == study]
        elif studies:
            study = studies[0]
    by_source: dict[str, dict[str, tuple[str, LawFit]]] = defaultdict(dict)
    for fid, f in fits:
        if is_control(f.source) or parse_mixture(f.source) is not None:
            continue
        by_source[f.source][f.metric] = (fid, f)
    return study, by_source


def _objective(
    metrics: Sequence[str],
    metric: str | None,
    weights: Mapping[str, float] | None,
    guards: Sequence[Guard],
) -> tuple[dict[str, float], list[str]]:
    """The objective's weights and every metric the problem needs (weighted, then guarded).

    Raises:
        SolveError: as :func:`pick_metric`, for any metric named.
    """
    if weights:
        for m in weights:
            pick_metric(metrics, m)
        weights = dict(weights)
    else:
        weights = {pick_metric(metrics, metric): 1.0}
    for g in guards:
        pick_metric(metrics, g.metric)
    return weights, list(dict.fromkeys([*weights, *(g.metric for g in guards)]))


def _chosen_sources(
    by_source: Mapping[str, Mapping[str, Any]],
    needed: Sequence[str],
    sources: Sequence[str] | None,
    notes: list[str],
) -> list[str]:
    """The sources with a fit for every needed metric (of ``sources`` when given).

    Raises:
        SolveError: an unknown source asked for, or no source with every fit.
    """
    names = [s for s in sorted(by_source) if all(m in by_source[s] for m in needed)]
    if sources:
        unknown = [s for s in sources if s not in by_source]
        if unknown:
            raise SolveError(
                f"no fits for source(s) {', '.join(unknown)}; fitted: {', '.join(sorted(by_source))}"
            )
        names = [s for s in names if s in sources]
    skipped = sorted(set(by_source) - set(names))
    if skipped:
        notes.append(f"left out (no fit for every metric used): {', '.join(skipped)}")
    if not names:
        raise SolveError(
            "no source has fits for every metric used; fit them first (`annealplan fit`)"
        )
    return names


def _model_size(runs: Sequence[Run]) -> float:
    """The annealing model's size: the median of the runs' parameter counts.

    Raises:
        SolveError: no run records it.
    """
    sizes = [r.params for r in runs if r.params]
    if not sizes:
        raise SolveError("the annealing model's size is unknown; pass --model-params (e.g. 135M)")
    return float(np.median(sizes))


def _source_inputs(
    names: Sequence[str],
    by_source: Mapping[str, Mapping[str, tuple[str, LawFit]]],
    registered: Mapping[str, Any],
    registry: Any,
    notes: list[str],
) -> list[SourceInput]:
    """Each chosen source with its fits, cost model and cap (a source that is not
    registered is free and uncapped, and a note says so)."""
    inputs = []
    for name in names:
        src = registered.get(name)
        curation = (
            registry.cost_model_for(src) if (src is not None and registry is not None) else None
        )
        if src is None:
            notes.append(
                f"{name} is not a registered source: its curation is taken as free and uncapped"
            )
        inputs.append(
            SourceInput(
                name=name,
                fits={m: f for m, (_, f) in by_source[name].items()},
                curation=curation,
                cap_tokens=None if src is None else src.cap_tokens,
                fit_ids=tuple(fid for _, (fid, _) in by_source[name].items()),
            )
        )
    return inputs


def _controls(
    inputs: Sequence[SourceInput],
    needed: Sequence[str],
    weights: Mapping[str, float],
    obs: Sequence[Observation],
    control: float | None,
    notes: list[str],
) -> dict[str, Control]:
    """Per needed metric, the control anneal's value from its runs, with as many bootstrap
    means as the fits have samples; the main metric may take a value given by hand."""
    n_boot = min(
        (
            f.boot.shape[0]
            for s in inputs
            for m, f in s.fits.items()
            if m in needed and f.boot is not None
        ),
        default=0,
    )
    controls: dict[str, Control] = {}
    for m in needed:
        values = [o.value for o in obs if o.metric == m and is_control(o.source)]
        if values:
            controls[m] = control_from_values(values, n_boot)
        elif control is not None and m == next(iter(weights)):
            controls[m] = Control(
                float(control), None if n_boot == 0 else np.full(n_boot, float(control))
            )
            notes.append(f"control value of {m} given by hand: {control:g}")
    return controls


def _mixed_runs(
    obs: Sequence[Observation], runs: Sequence[Any], main: str, compute_is_tokens: bool
) -> tuple[tuple[str, float, float], ...]:
    """The mixed runs (``a+b``) of the main metric as (source, source tokens, value); a run
    that records neither its tokens nor its compute in tokens is left out."""
    tokens = {
        r.run_id: r.tokens or (r.compute if compute_is_tokens else None)
        for r in runs
        if r.tokens or compute_is_tokens
    }
    return tuple(
        (o.source, float(tokens[o.run_id]), float(o.value))
        for o in obs
        if o.metric == main
        and o.source
        and parse_mixture(o.source) is not None
        and o.run_id in tokens
    )


def combination_for(
    problem: AllocationProblem, obs: Sequence[Observation], rule: str
) -> CombinationRule:
    """The combination rule for the problem's objective, with the metric's headroom H.

    H is what the metric leaves to gain over the control, in the objective's units: for a
    score in [0, 1] (every measured value and the control inside it) ``1 − control``;
    otherwise the distance from the control to the best asymptote the laws reach (for a
    loss that never reaches one, the distance to 0 when every value is non-negative). A
    weighted objective or guard-rails have no single headroom: gains are then added.

    Raises:
        SolveError: an unknown rule.
    """
    if rule not in RULES:
        raise SolveError(f"unknown combination rule {rule!r}; use one of {', '.join(RULES)}")
    if rule == "additive":
        return additive_rule()
    if len(problem.weights) != 1 or problem.guards:
        why = "a weighted objective or guard-rails have no single headroom"
        return CombinationRule(rule="additive", why_additive=why)
    metric, w = next(iter(problem.weights.items()))
    ctrl = problem.controls[metric].value
    values = [o.value for o in obs if o.metric == metric] + [ctrl]
    lib = any(s.fits[metric].lower_is_better for s in problem.inputs if metric in s.fits)
    in_unit = all(0.0 <= v <= 1.0 for v in values)
    head: float | None = None
    if not lib and in_unit:
        head = 1.0 - ctrl
    else:
        far = np.array([float(c.gain(1e30)) for c in problem.curves]) / abs(w)
        far = far[np.isfinite(far)]
        if far.size == len(problem.curves) and far.max() > 0:
            head = float(far.max())
        elif lib and all(v >= 0 for v in values):
            head = ctrl
    if head is None or not head > 0:
        why = "the metric has no known bound over the control"
        return CombinationRule(rule="additive", why_additive=why)
    return CombinationRule(rule="coverage", headroom=abs(w) * head)


def _measured_mixtures(
    store: Any,
    study: str | None,
    obs: Sequence[Observation],
    mixed: Sequence[tuple[str, float, float]],
    main: str,
) -> list[tuple[Mapping[str, float], float]]:
    """Each measured mixture as (tokens per source, value of the main metric): from the
    store's record of what the run trained on, else from its name's shares."""
    found = store.mixtures(study) if hasattr(store, "mixtures") else []
    exact = {m.run_id: m.tokens_per_source for m in found}
    out: list[tuple[Mapping[str, float], float]] = []
    seen = set()
    for o in obs:
        if o.metric == main and o.run_id in exact:
            out.append((exact[o.run_id], float(o.value)))
            seen.add(o.source)
    for source, tok, value in mixed:
        shares = parse_mixture(source)
        if shares and source not in seen:
            out.append(({k: v * tok for k, v in shares.items()}, value))
    return out


def fit_mixtures(
    problem: AllocationProblem,
    rule: CombinationRule,
    mixtures: Sequence[tuple[Mapping[str, float], float]],
) -> CombinationRule:
    """The rule with its interaction fitted from measured mixtures of the problem's sources,
    each given as (tokens per source, measured value of the main metric)."""
    metric, w = next(iter(problem.weights.items()))
    ctrl = problem.controls[metric].value
    lib = any(s.fits[metric].lower_is_better for s in problem.inputs if metric in s.fits)
    rows, measured = [], []
    for tokens_by, value in mixtures:
        if not tokens_by or any(s not in problem.names for s in tokens_by):
            continue
        rows.append([float(tokens_by.get(n, 0.0)) for n in problem.names])
        measured.append(w * ((ctrl - value) if lib else (value - ctrl)))
    if not rows:
        return rule
    tokens = np.array(rows)
    point = evaluate_plan(problem, tokens, None)
    boot = None
    if problem.n_boot > 1:
        B = min(problem.n_boot, 100)
        sample = np.repeat(np.arange(B), len(rows))
        boot = evaluate_plan(problem, np.tile(tokens, (B, 1)), sample).reshape(B, len(rows), -1)
    return fit_interaction(rule, point, measured, boot)


def _with_pairwise(
    problem: AllocationProblem, observations: Sequence[Any], notes: list[str]
) -> AllocationProblem:
    """Attach the difference model's view of the objective's metrics (see
    :mod:`planner.allocate.pairwise_view`), built from the study's runs with the problem's
    fits as the common level; the problem is left without one where it cannot be built."""
    from planner.laws.pairwise_view import study_views

    fits = [f for s in problem.inputs for m, f in s.fits.items() if m in problem.weights]
    wanted = [o for o in observations if o.metric in problem.weights]
    try:
        views = study_views(wanted, fits)
    except (ValueError, ArithmeticError, np.linalg.LinAlgError, AnnealplanError) as e:
        notes.append(
            f"the difference model could not be built ({e}); P(in optimal plan) "
            "counts the laws' bootstrap rows as they are"
        )
        return problem
    by_metric = {m: v for (_, m), v in views.items()}
    return dataclasses.replace(problem, pairwise=by_metric)


def _with_min_tokens(
    problem: AllocationProblem,
    runs: Sequence[Any],
    unit: Unit | None,
    max_extrapolation: float | None = None,
) -> AllocationProblem:
    """Give each curve the smallest token budget its source was measured at (see
    ``Curve.min_tokens``): the law is not extrapolated below its data; with
    ``max_extrapolation`` also cap its tokens at that multiple of its largest budget."""
    import dataclasses

    smallest: dict[str, float] = {}
    largest: dict[str, float] = {}
    for r in runs:
        tokens = r.tokens if r.tokens else (r.compute if unit is Unit.TOKENS else None)
        if tokens:
            smallest[r.source] = min(smallest.get(r.source, math.inf), float(tokens))
            largest[r.source] = max(largest.get(r.source, 0.0), float(tokens))

    def cap(c) -> float:
        if max_extrapolation and c.name in largest:
            return min(c.cap_tokens, max_extrapolation * largest[c.name])
        return c.cap_tokens

    def fix(curves):
        return tuple(
            dataclasses.replace(c, min_tokens=smallest.get(c.name, 0.0), cap_tokens=cap(c))
            for c in curves
        )

    return dataclasses.replace(
        problem,
        curves=fix(problem.curves),
        guard_curves=tuple(fix(g) for g in problem.guard_curves),
        supply_caps=tuple(c.cap_tokens for c in problem.curves),
        largest_tokens=tuple(largest.get(n, math.nan) for n in problem.names),
        trust_multiple=max_extrapolation,
    )


def noise_levels(
    problem: AllocationProblem, observations: Sequence[Any], metric: str | None = None
) -> dict[str, float]:
    """Per source, the residual standard deviation of its runs around its point law.

    Falls back to the median over sources (or 1% of the metric's spread) where a source has
    too few runs to tell. The control's level is the spread of its repeated runs.
    """
    metric = metric or next(iter(problem.weights))
    out: dict[str, float] = {}
    for s in problem.inputs:
        f = s.fits[metric]
        fam = problem.families[f.family]
        fn = sympy.lambdify((fam.x, *fam.params), fam.expr, "numpy")
        pts = [
            (o.compute, o.value) for o in observations if o.source == s.name and o.metric == metric
        ]
        k = len(fam.params)
        if len(pts) > k:
            x = np.array([p[0] for p in pts]) / f.x_ref
            y = np.array([p[1] for p in pts])
            with np.errstate(all="ignore"):
                r = y - fn(x, *[f.params[p.name] for p in fam.params])
            out[s.name] = float(np.sqrt(np.sum(r**2) / (len(pts) - k)))
    vals = [v for v in out.values() if np.isfinite(v) and v > 0]
    ctrl = [o.value for o in observations if o.metric == metric and is_control(o.source)]
    spread = [o.value for o in observations if o.metric == metric]
    fallback = (
        float(np.median(vals)) if vals else (0.01 * float(np.ptp(spread)) if spread else 0.01)
    )
    fallback = fallback if fallback > 0 else 0.01
    for s in problem.names:
        if not (np.isfinite(out.get(s, np.nan)) and out[s] > 0):
            out[s] = fallback
    out[CONTROL_SOURCE] = (
        float(np.std(ctrl, ddof=1)) if len(ctrl) > 1 and np.std(ctrl) > 0 else fallback
    )
    return out
