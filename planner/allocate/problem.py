"""From fitted laws, cost models and an objective to the per-source curves the solver needs.

Conventions (also in the CLI help):

* A source's **total cost** of ``n`` tokens, in the budget's unit, is its curation cost model
  (converted to the unit) plus training ``6·N·n / (1 − replay_fraction)`` FLOPs at the
  annealing model's size N (converted). An unused source costs nothing, so a curation model
  with a fixed part (``expr(0) > 0``) is a fixed cost paid only when the source is used.
* A law's ``x`` is the run's compute divided by ``fit.x_ref``. With compute in tokens,
  ``x = n / x_ref``; with compute as a cost (FLOPs, GPU-hours, USD), ``x = cost(n) / x_ref``
  with cost(n) the source's total cost in that unit (the paper's performance vs total cost).
* The **gain** of a source for one metric is ``s · (law(x(n)) − control)`` with ``s = −1``
  for lower-is-better metrics, so a positive gain is always an improvement. Several metrics
  combine as a weighted sum of gains.
* A **guard-rail** ``metric>=t`` (or ``<=``) bounds the summed change of that metric over
  control, in the metric's own units (write ``general_acc>=-0.01`` for "at most one point
  lower" when accuracies are stored in [0, 1]).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import sympy

from planner.allocate.combine import CombinationRule, additive_rule
from planner.allocate.model import N_TOKENS, Curve, make_curve
from planner.domain import LawFit
from planner.errors import SolveError
from planner.units import Rates, Unit, convert

if TYPE_CHECKING:
    from planner.laws.pairwise_view import PairwiseView


@dataclass(frozen=True, slots=True)
class Guard:
    """A guard-rail: the summed change of ``metric`` over control must satisfy ``op threshold``.

    Attributes:
        metric: the metric's name.
        op: ``">="`` or ``"<="``.
        threshold: in the metric's own units.
    """

    metric: str
    op: str
    threshold: float

    @property
    def sign(self) -> float:
        return 1.0 if self.op == ">=" else -1.0

    def __str__(self) -> str:
        return f"{self.metric}{self.op}{self.threshold:g}"


_GUARD = re.compile(r"^\s*([^<>=\s]+)\s*(>=|<=)\s*([-+]?[\d.]+(?:e[-+]?\d+)?)\s*$", re.I)


def parse_guard(text: str) -> Guard:
    """Parse ``"general_acc>=-0.01"`` into a :class:`Guard`.

    Raises:
        SolveError: the text is not ``metric>=number`` or ``metric<=number``.
    """
    m = _GUARD.match(text)
    if not m:
        raise SolveError(
            f"cannot read guard-rail {text!r}; write metric>=number or metric<=number, "
            'e.g. "general_acc>=-0.01" (change over the control anneal, in the metric\'s units)'
        )
    return Guard(m[1], m[2], float(m[3]))


def parse_weights(text: str) -> dict[str, float]:
    """Parse ``"med_acc=1,general_acc=0.5"`` into a weight per metric.

    Raises:
        SolveError: a part is not ``metric=number``.
    """
    out: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, value = part.partition("=")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            raise SolveError(
                f"cannot read weight {part!r}; write metric=number, e.g. med_acc=1,general_acc=0.5"
            ) from None
        if not name.strip():
            raise SolveError(f"weight {part!r} names no metric; write metric=number")
    if not out:
        raise SolveError("no weights given; write metric=number[,metric=number…]")
    return out


@dataclass(frozen=True, slots=True)
class CostSetup:
    """How a token of a source is priced, in the budget's unit.

    Attributes:
        unit: the budget's unit (FLOPs, GPU-hours, USD; TOKENS prices a token at 1).
        model_params: N, the annealing model's parameter count (training 6·N·D).
        rates: FLOPs ↔ GPU-hours ↔ USD.
        replay_fraction: share of replay tokens trained alongside the source's tokens.
        eval_cost: a fixed evaluation cost of the final plan, in ``unit`` (taken off the budget).
    """

    unit: Unit
    model_params: float
    rates: Rates = field(default_factory=Rates)
    replay_fraction: float = 0.0
    eval_cost: float = 0.0


def cost_expr(
    n: sympy.Symbol, curation: object | None, setup: CostSetup, unit: Unit | None = None
) -> sympy.Expr:
    """Total cost of ``n`` tokens of a source (curation + training) in ``unit``.

    Args:
        n: the token symbol.
        curation: a ``plugins.contract.CostModel`` (``.expr(n)``, ``.unit``) or None (free).
        setup: model size, rates and replay share.
        unit: the unit wanted (default: the budget's).
    """
    unit = unit or setup.unit
    if unit is Unit.TOKENS:
        return n
    train_flops = 6.0 * setup.model_params / (1.0 - setup.replay_fraction)
    expr = sympy.Float(train_flops * convert(1.0, Unit.FLOPS, unit, setup.rates)) * n
    if curation is not None:
        factor = convert(1.0, Unit(curation.unit), unit, setup.rates)
        expr = expr + sympy.Float(factor) * curation.expr(n)
    return expr


@dataclass(frozen=True, slots=True)
class SourceInput:
    """Everything known about one candidate source.

    Attributes:
        name: the source.
        fits: metric → its fitted law for this source.
        curation: its cost model (None: free).
        cap_tokens: its supply cap (None: unbounded).
        fit_ids: the stored ids of the fits (for the plan's provenance).
    """

    name: str
    fits: Mapping[str, LawFit]
    curation: object | None = None
    cap_tokens: float | None = None
    fit_ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Control:
    """The control anneal's value of one metric: point and bootstrap samples."""

    value: float
    boot: np.ndarray | None = None


@dataclass(frozen=True)
class AllocationProblem:
    """The allocation problem ready for the solver.

    Attributes:
        names: source names, in order.
        curves: objective curves (+ ``mu_g·guard_g`` terms with multiplier symbols mu_g).
        guard_curves: per guard, one curve per source (its signed change of the guarded metric).
        guards: the guard-rails.
        setup: costs.
        weights: metric → weight of the objective.
        n_boot: bootstrap rows available (0: point only).
        fit_ids: provenance.
        x_max_tokens: per source, the largest tokens the laws were fitted on (nan unknown).
        combination: how single-source gains combine (None: they add).
        supply_caps: per source, its own supply cap before the trust region (empty: the
            curves' caps are the supply caps).
        largest_tokens: per source, its largest measured budget in tokens (NaN unknown).
        trust_multiple: the trust region's multiple (None: no trust region).
        pairwise: metric → the difference model's view of the study's runs (see
            :mod:`planner.allocate.pairwise_view`); empty when none was built.
        p_in_optimal_from: ``laws`` (the bootstrap rows as solved) or ``difference``
            (the rows recalibrated to ``pairwise``).
    """

    names: tuple[str, ...]
    curves: tuple[Curve, ...]
    guard_curves: tuple[tuple[Curve, ...], ...]
    guards: tuple[Guard, ...]
    setup: CostSetup
    weights: Mapping[str, float]
    n_boot: int
    fit_ids: tuple[str, ...]
    x_max_tokens: tuple[float, ...]
    inputs: tuple[SourceInput, ...] = ()
    controls: Mapping[str, Control] = field(default_factory=dict)
    families: Mapping[str, object] = field(default_factory=dict)
    combination: CombinationRule | None = None
    supply_caps: tuple[float, ...] = ()
    largest_tokens: tuple[float, ...] = ()
    trust_multiple: float | None = None

    @property
    def rule(self) -> CombinationRule:
        """The combination rule; the additive rule when none was set."""
        return additive_rule() if self.combination is None else self.combination

    pairwise: Mapping[str, PairwiseView] = field(default_factory=dict)
    p_in_optimal_from: str = "laws"

    @property
    def metric_label(self) -> str:
        if len(self.weights) == 1:
            return next(iter(self.weights))
        return "+".join(f"{w:g}*{m}" for m, w in self.weights.items())

    def mu_index(self, k: int, g: int) -> int:
        """Column of guard multiplier ``g`` in source ``k``'s parameter vector."""
        names = [s.name for s in self.curves[k].template.syms]
        return names.index(f"mu_{g}")

    def thetas(self, rows: int, sample: np.ndarray | None = None) -> list[np.ndarray]:
        """Per-source (rows, P) parameter arrays: point values, or bootstrap rows ``sample``."""
        return _thetas(self.curves, rows, sample)

    def guard_thetas(self, g: int, rows: int, sample: np.ndarray | None = None) -> list[np.ndarray]:
        return _thetas(self.guard_curves[g], rows, sample)

    def set_multipliers(self, thetas: Sequence[np.ndarray], mu: np.ndarray | None) -> None:
        """Write the guard multipliers into per-source parameter rows, in place.

        Args:
            thetas: per source an (R, P) array, as :meth:`thetas` gives.
            mu: (G, R) multipliers per guard and row; None writes 0 (the objective alone).
        """
        for k in range(len(self.curves)):
            for g in range(len(self.guards)):
                thetas[k][:, self.mu_index(k, g)] = 0.0 if mu is None else mu[g]

    def objective_thetas(self, rows: int, sample: np.ndarray | None = None) -> list[np.ndarray]:
        """Like :meth:`thetas`, with every guard multiplier at 0: the objective alone."""
        thetas = self.thetas(rows, sample)
        self.set_multipliers(thetas, None)
        return thetas


def _thetas(curves: Sequence[Curve], rows: int, sample: np.ndarray | None) -> list[np.ndarray]:
    out = []
    for c in curves:
        if sample is None or c.boot is None:
            out.append(np.broadcast_to(c.theta, (rows, c.theta.size)).copy())
        else:
            out.append(c.boot[sample % c.boot.shape[0]].copy())
    return out


def law_expr(
    fit: LawFit,
    family: object,
    n: sympy.Symbol,
    setup: CostSetup,
    curation: object | None,
    tag: str,
    compute_unit: Unit,
    extra_values: Mapping[str, float] | None = None,
) -> tuple[sympy.Expr, dict[sympy.Symbol, object]]:
    """The fitted law as an expression in tokens, with its parameters renamed by ``tag``.

    Returns:
        (expression, values) where values maps each parameter symbol to its point value or,
        when the fit has bootstrap samples, its column of samples.
    """
    x = family.x
    params = tuple(family.params)
    names = [p.name for p in params]
    missing = [p for p in names if p not in fit.params]
    if missing:
        raise SolveError(
            f"fit of {fit.source}/{fit.metric} lacks parameter(s) {', '.join(missing)} of "
            f"family {fit.family!r}; refit with `annealplan fit`"
        )
    new = {p: sympy.Symbol(f"{p.name}__{tag}", real=True) for p in params}
    xref = sympy.Symbol(f"xref__{tag}", positive=True)
    compute = n if compute_unit is Unit.TOKENS else cost_expr(n, curation, setup, compute_unit)
    expr = family.expr.xreplace(new).xreplace({x: compute / xref})
    others = expr.free_symbols - set(new.values()) - {xref, n}
    subs = {}
    for s in others:
        if extra_values and s.name in extra_values:
            subs[s] = sympy.Float(extra_values[s.name])
        else:
            raise SolveError(
                f"law family {fit.family!r} needs a value for {s.name!r}; "
                "pass it (e.g. --model-params for the model size)"
            )
    expr = expr.xreplace(subs)
    values: dict[sympy.Symbol, object] = {xref: float(fit.x_ref)}
    boot = None if fit.boot is None else np.asarray(fit.boot, dtype=float)
    for j, p in enumerate(params):
        point = float(fit.params[p.name])
        if boot is not None and boot.ndim == 2 and boot.shape[1] == len(params):
            values[new[p]] = boot[:, j]
            values[(new[p], "point")] = point  # type: ignore[index]
        else:
            values[new[p]] = point
    return expr, values


def predictor_expr(
    fit: LawFit,
    families: Mapping[str, object],
    n: sympy.Symbol,
    setup: CostSetup,
    curation: object | None,
    tag: str,
    compute_unit: Unit,
    extra_values: Mapping[str, float] | None = None,
) -> tuple[sympy.Expr, dict[sympy.Symbol, object]]:
    """The fit's predictor as an expression in tokens: its law, or for a model average the
    sum of ``z_k·law_k`` over its laws.

    ``z_k`` is law k's weight at the point values (the averaged prediction); in bootstrap
    row b it is 1 for the law that draw b takes and 0 for the others, with the draws split
    among the laws by their weights as :func:`planner.laws.decision.member_draws` splits
    them (the same split for every source of one joint fit, so row b stays one joint
    draw). The bootstrap rows then carry which law is right as well as its parameters.

    Raises:
        SolveError: an unknown family, or a law that lacks its family's parameters.
    """
    if fit.average is None or len(fit.average.members) < 2:
        return law_expr(
            fit, _family(families, fit), n, setup, curation, tag, compute_unit, extra_values
        )
    from planner.laws.decision import member_draws

    n_draws, parts = member_draws([fit])
    total: sympy.Expr = sympy.Integer(0)
    values: dict[sympy.Symbol, object] = {}
    for k, part in enumerate(parts):
        member = part.fits[fit.source]
        law, vals = law_expr(
            member,
            _family(families, member),
            n,
            setup,
            curation,
            f"{tag}a{k}",
            compute_unit,
            extra_values,
        )
        z = sympy.Symbol(f"z__{tag}a{k}", nonnegative=True)
        takes = np.zeros(n_draws)
        takes[part.rows] = 1.0
        values.update(vals)
        values[z] = takes
        values[(z, "point")] = float(part.weight)  # type: ignore[index]
        total = total + z * law
    return total, values


def _family(families: Mapping[str, object], fit: LawFit) -> object:
    if fit.family not in families:
        raise SolveError(
            f"unknown law family {fit.family!r} in the fit of {fit.source}/{fit.metric}; "
            "install the plugin that provides it"
        )
    return families[fit.family]


def _boot_rows(fit: LawFit) -> int | None:
    """How many joint bootstrap rows the fit's predictor has (None: none): the fewest of
    its laws' for a model average, whose draws pair the laws' replicates row by row."""
    if fit.average is not None and len(fit.average.members) > 1:
        sizes = [
            int(np.shape(m.boot)[0])
            for m in fit.average.members
            if m.boot is not None and np.ndim(m.boot) == 2 and np.shape(m.boot)[0]
        ]
        return min(sizes) if sizes else None
    if fit.boot is not None and np.ndim(fit.boot) == 2:
        return int(fit.boot.shape[0])
    return None


def build_problem(
    inputs: Sequence[SourceInput],
    families: Mapping[str, object],
    controls: Mapping[str, Control],
    setup: CostSetup,
    *,
    weights: Mapping[str, float],
    guards: Sequence[Guard] = (),
    compute_units: Mapping[str, Unit] | None = None,
    extra_values: Mapping[str, float] | None = None,
) -> AllocationProblem:
    """Assemble the objective and guard curves of every source.

    Args:
        inputs: the candidate sources with their fits.
        families: family name → LawFamily (``.expr``, ``.x``, ``.params``).
        controls: metric → the control anneal's value.
        setup: costs.
        weights: metric → weight (direction is taken from the fits).
        guards: guard-rails.
        compute_units: metric → the unit of the runs' compute (default tokens).
        extra_values: values of extra law symbols (e.g. ``N`` for two-variable laws).

    Raises:
        SolveError: a metric has no fit for some source, no control value, or an unknown family.
    """
    if not inputs:
        raise SolveError("no sources to allocate over; fit laws first (`annealplan fit`)")
    compute_units = compute_units or {}
    metrics = list(dict.fromkeys([*weights, *(g.metric for g in guards)]))
    for m in metrics:
        if m not in controls:
            raise SolveError(
                f"no control anneal value for metric {m!r}; run the control anneal "
                "(`annealplan design` includes it) or pass --control VALUE"
            )
    n_boot = _joint_boot_length(inputs, metrics)
    curves, guard_curves = [], [[] for _ in guards]
    xmax = []
    for s in inputs:
        gains = _metric_gains(s, metrics, families, controls, setup, compute_units, extra_values)
        total_cost = cost_expr(N_TOKENS, s.curation, setup)
        curves.append(_objective_curve(s, gains, weights, guards, total_cost, n_boot))
        for g, guard in enumerate(guards):
            e, v = gains[guard.metric]
            guard_curves[g].append(
                make_curve(
                    s.name,
                    sympy.Float(guard.sign) * _raw_change(s, e, guard.metric),
                    total_cost,
                    trim_to_boot(dict(v), n_boot),
                    cap_tokens=s.cap_tokens,
                )
            )
        xmax.append(_x_max_tokens(s, metrics, compute_units))
    fit_ids = tuple(i for s in inputs for i in s.fit_ids)
    return AllocationProblem(
        names=tuple(s.name for s in inputs),
        curves=tuple(curves),
        guard_curves=tuple(tuple(g) for g in guard_curves),
        guards=tuple(guards),
        setup=setup,
        weights=dict(weights),
        n_boot=n_boot,
        fit_ids=fit_ids,
        x_max_tokens=tuple(xmax),
        inputs=tuple(inputs),
        controls=dict(controls),
        families=dict(families),
    )


def _joint_boot_length(inputs: Sequence[SourceInput], metrics: Sequence[str]) -> int:
    """One bootstrap length for all: row b of every source is one joint sample."""
    lengths = [
        rows
        for s in inputs
        for m, fit in s.fits.items()
        if m in metrics and (rows := _boot_rows(fit)) is not None
    ]
    return min(lengths) if lengths else 0


def _metric_gains(
    s: SourceInput,
    metrics: Sequence[str],
    families: Mapping[str, object],
    controls: Mapping[str, Control],
    setup: CostSetup,
    compute_units: Mapping[str, Unit],
    extra_values: Mapping[str, float] | None,
) -> dict[str, tuple[sympy.Expr, dict]]:
    """Per metric, the source's direction-adjusted gain over control in tokens, with the
    values of its parameters (point values or bootstrap columns)."""
    exprs: dict[str, tuple[sympy.Expr, dict]] = {}
    for t, m in enumerate(metrics):
        fit = s.fits.get(m)
        if fit is None:
            raise SolveError(
                f"source {s.name!r} has no fitted law for metric {m!r}; "
                f"fit it (`annealplan fit --metric {m}`) or leave the source out"
            )
        unit = compute_units.get(m, Unit.TOKENS)
        law, vals = predictor_expr(
            fit, families, N_TOKENS, setup, s.curation, f"m{t}", unit, extra_values
        )
        ctrl = sympy.Symbol(f"ctrl__m{t}", real=True)
        c = controls[m]
        vals[ctrl] = c.value if c.boot is None else np.asarray(c.boot, dtype=float)
        if c.boot is not None:
            vals[(ctrl, "point")] = c.value  # type: ignore[index]
        sign = -1.0 if fit.lower_is_better else 1.0
        exprs[m] = (sympy.Float(sign) * (law - ctrl), vals)
    return exprs


def _raw_change(s: SourceInput, gain: sympy.Expr, metric: str) -> sympy.Expr:
    """The metric's raw change over control from its direction-adjusted gain."""
    return gain * (-1 if s.fits[metric].lower_is_better else 1)


def _objective_curve(
    s: SourceInput,
    gains: Mapping[str, tuple[sympy.Expr, dict]],
    weights: Mapping[str, float],
    guards: Sequence[Guard],
    total_cost: sympy.Expr,
    n_boot: int,
) -> Curve:
    """The weighted gain plus ``mu_g·guard_g`` per guard-rail (multiplier symbols at 0)."""
    gain = sympy.Integer(0)
    values: dict = {}
    for m, w in weights.items():
        e, v = gains[m]
        gain = gain + sympy.Float(w) * e
        values.update(v)
    for g, guard in enumerate(guards):
        mu = sympy.Symbol(f"mu_{g}", nonnegative=True)
        e, v = gains[guard.metric]
        # gains are direction-adjusted; the guard is on the raw change
        gain = gain + mu * sympy.Float(guard.sign) * _raw_change(s, e, guard.metric)
        values.update(v)
        values[mu] = 0.0
    values = trim_to_boot(values, n_boot)
    return make_curve(s.name, gain, total_cost, values, cap_tokens=s.cap_tokens)


def trim_to_boot(values: dict, n_boot: int) -> dict:
    """Parameter values with every bootstrap column cut (or cycled) to ``n_boot`` rows; with
    no bootstrap, the point values alone."""
    out = {}
    for k, v in values.items():
        if isinstance(v, np.ndarray) and v.ndim == 1:
            if n_boot == 0:
                continue  # handled through the point value below
            v = v[np.arange(n_boot) % v.size]  # a shorter sample is reused cyclically
        out[k] = v
    if n_boot == 0:
        for k, v in values.items():
            if isinstance(k, tuple) and k[0] not in out:
                out[k[0]] = v
        out = {k: v for k, v in out.items() if not isinstance(k, tuple)}
    return out


def _x_max_tokens(s: SourceInput, metrics: Sequence[str], units: Mapping[str, Unit]) -> float:
    vals = []
    for m in metrics:
        f = s.fits.get(m)
        if f is not None and units.get(m, Unit.TOKENS) is Unit.TOKENS and np.isfinite(f.x_max):
            vals.append(float(f.x_max))
    return min(vals) if vals else float("nan")


def control_from_values(values: Sequence[float], n_boot: int, seed: int = 0) -> Control:
    """The control value of one metric from its runs: the mean, with bootstrap means.

    A single control run gives no spread of its own; its bootstrap is then constant (the
    noise of the control is not modelled in that case).
    """
    v = np.asarray(values, dtype=float)
    if v.size == 0:
        raise SolveError("no control anneal runs; run the control anneal or pass --control")
    if n_boot <= 0 or v.size == 1:
        return Control(float(v.mean()), None if n_boot <= 0 else np.full(n_boot, v.mean()))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, v.size, size=(n_boot, v.size))
    return Control(float(v.mean()), v[idx].mean(axis=1))
