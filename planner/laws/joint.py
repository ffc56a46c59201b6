"""Joint fits across the sources of one (study, metric), and model selection.

Independent fits on 3–6 points per source are unstable: three points barely fix a
three-parameter power law. A joint fit solves one least-squares problem over every source of
a (study, metric) and shares some parameters — the exponent and the asymptote describe the
model and the metric more than the data source, while the scale (or the intercept) is
what a source changes. Which family and which sharing pattern to use is chosen by
leave-last-out extrapolation error: hold out each source's largest-compute point, fit the
rest, and score how well the held-out points are extrapolated — the task the law is for.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from planner.domain import (
    AveragedLaw,
    LawFit,
    LeaveLastOut,
    ModelAverage,
    Observation,
    is_perplexity,
)
from planner.errors import FitError
from planner.laws.families import compiled, get_family
from planner.laws.fit import check_xy, to_lawfits
from planner.laws.lm import (
    DEFAULT_BOOTSTRAP,
    LawProblem,
    LawSolution,
    bootstrap,
    make_problem,
    solve_law,
)


@dataclass(frozen=True, slots=True)
class Candidate:
    """A family plus the parameters shared across sources.

    ``shared=None`` means every parameter is shared except none — use ``()`` for fully
    independent fits (each source its own parameters, still solved as one problem).
    """

    family: str
    shared: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return f"{self.family}[{','.join(self.shared)}]" if self.shared else self.family

    def per_source_params(self) -> int:
        fam = get_family(self.family)
        return sum(1 for p in fam.param_names if p not in self.shared)

    def n_params(self, n_sources: int) -> int:
        return len(self.shared) + n_sources * self.per_source_params()


def parse_candidate(text: str) -> Candidate:
    """``"power[E,alpha]"`` → Candidate("power", ("E", "alpha")); ``"power"`` → independent.

    Raises:
        FitError: unknown family or parameter.
    """
    text = text.strip()
    if "[" in text:
        name, rest = text.split("[", 1)
        shared = tuple(p.strip() for p in rest.rstrip("]").split(",") if p.strip())
    else:
        name, shared = text, ()
    fam = get_family(name)
    bad = [p for p in shared if p not in fam.param_names]
    if bad:
        raise FitError(
            f"Family {name!r} has no parameter {bad[0]!r}; its parameters are "
            f"{', '.join(fam.param_names)}."
        )
    return Candidate(name, shared)


# Candidates for model selection, simplest first (ties go to the simpler one). With 3–6
# points per source only laws with at most two parameters per source are supported by the
# data: shared shape (slope, or exponent and asymptote), per-source level or scale, and one
# form whose sources may cross (shared asymptote, per-source scale and exponent). The
# constant (per-source level, no trend) comes first: on a flat, noisy series a fitted slope
# extrapolates noise, and leave-last-out error is what tells the two cases apart.
#
# The crossing form is the power law with a shared asymptote, not a line in log-compute
# with a per-source slope: on a saturating curve a line's slope is proportional to the
# distance from the asymptote, so per-source lines turn every level difference into a
# slope difference and predict crossings that never come. On synthetic groups with a
# shared power law the per-source line alone ordered 32% of pairs correctly at F = 0.1
# (the point estimate 90%); with per-source exponents averaging it in put the default
# method 1–6 points below the point estimate, and the shared-asymptote power law mostly
# above it (examples/gadre2024/README.md has the figures).
CANDIDATES_ANY = (
    Candidate("constant"),
    Candidate("loglinear", ("b",)),
    Candidate("power", ("E", "alpha")),
    Candidate("power", ("E",)),
)
# A perplexity is the exponential of a loss, so where a loss follows a power law its
# perplexity follows exp(E + A·x^-α), which falls steeply and then flattens faster than any
# power law in the perplexity itself: the same shapes, one level up. (Adding these forms
# for every metric instead was measured on the development data and left out: decisions
# did not improve and the mean relative error grew, 0.207 → 0.231 at F = 0.1.)
CANDIDATES_PERPLEXITY = (
    Candidate("constant"),
    Candidate("loglinear", ("b",)),
    Candidate("exppower", ("E", "alpha")),
    Candidate("exppower", ("E",)),
)
# Richer forms, for sources with many points (``annealplan fit --family power``), and the
# per-source line for a user who asks for it (``--family loglinear``).
CANDIDATES_RICH = (
    Candidate("loglinear"),
    Candidate("power", ("alpha",)),
    Candidate("power"),
)
# One source on its own: a level, or a line.
CANDIDATES_INDEPENDENT = (Candidate("constant"), Candidate("loglinear"))
CANDIDATES_BOUNDED = (Candidate("logistic", ("floor", "ceil", "k")),)


def default_candidates(values: np.ndarray, metric: str = "") -> tuple[Candidate, ...]:
    """The default candidates: the shared-shape forms above, and for a perplexity (a name
    with ``ppl`` or ``perplexity`` whose values are all positive) their exponential forms.

    The logistic and the richer power forms are left out of the default: on short,
    noisy series they fit the noise and extrapolate it (leave-last-out picks them by luck).
    """
    if is_perplexity(metric) and values.size and bool(np.all(values > 0)):
        return CANDIDATES_PERPLEXITY
    return CANDIDATES_ANY


@dataclass(frozen=True, slots=True)
class GroupData:
    """The points of one (study, metric), per source, sorted by compute.

    ``var`` gives, per source, each point's known noise variance (NaN where unknown; see
    :mod:`planner.laws.noise`); the fits then weigh points by its inverse.
    """

    study: str
    metric: str
    lower_is_better: bool
    data: Mapping[str, tuple[np.ndarray, np.ndarray]]
    var: Mapping[str, np.ndarray] | None = None

    @property
    def sources(self) -> tuple[str, ...]:
        return tuple(self.data)


def group_observations(
    observations: Sequence[Observation], *, lower_is_better: Mapping[str, bool] | None = None
) -> list[GroupData]:
    """Group observations by (study, metric) and source, sorted by compute; a mixed run's
    (source ``a+b``) is left out: it is no source of its own to fit."""
    from planner.domain import is_mixture
    from planner.domain import lower_is_better as direction
    from planner.laws.noise import RunPoint, group_noise, run_variances

    buckets: dict[tuple[str, str], dict[str, list[RunPoint]]] = {}
    for o in observations:
        if is_mixture(o.source):
            continue
        buckets.setdefault((o.study, o.metric), {}).setdefault(o.source, []).append(
            RunPoint(float(o.compute), float(o.value), o.n_items, o.seed)
        )
    out = []
    for (study, metric), by_source in sorted(buckets.items()):
        noise = group_noise(by_source)
        data, var = {}, {}
        for source, pts in sorted(by_source.items()):
            pts = sorted(pts, key=lambda p: (p.compute, p.value))
            data[source] = (
                np.array([p.compute for p in pts], dtype=float),
                np.array([p.value for p in pts], dtype=float),
            )
            var[source] = run_variances(pts, noise)
        known = noise.known and all(np.all(np.isfinite(v)) for v in var.values())
        out.append(
            GroupData(
                study, metric, direction(metric, lower_is_better), data, var if known else None
            )
        )
    return out


def build_problem(
    candidate: Candidate,
    data: Mapping[str, tuple[np.ndarray, np.ndarray]],
    *,
    lower_is_better: bool | None,
    x_ref: float | None = None,
    var: Mapping[str, np.ndarray] | None = None,
) -> LawProblem:
    """The joint least-squares problem of a candidate over the sources in ``data``
    (weighed by the inverse of ``var``, each point's noise variance, where given)."""
    fam = get_family(candidate.family)
    names = fam.param_names
    sources = list(data)
    layout = np.zeros((len(sources), len(names)), dtype=int)
    col = 0
    for j, p in enumerate(names):
        if p in candidate.shared:
            layout[:, j] = col
            col += 1
    for s in range(len(sources)):
        for j, p in enumerate(names):
            if p not in candidate.shared:
                layout[s, j] = col
                col += 1
    xs, ys, src = [], [], []
    for s, name in enumerate(sources):
        x, y = check_xy(*data[name], f" for {name}")
        xs.append(x)
        ys.append(y)
        src.append(np.full(x.size, s))
    x_all = np.concatenate(xs)
    ref = float(x_ref) if x_ref else float(np.max(x_all))
    v_all = (
        np.concatenate([np.asarray(var[name], dtype=float) for name in sources]) if var else None
    )
    return make_problem(
        fam,
        x_all[None, :],
        np.concatenate(ys),
        np.concatenate(src),
        layout,
        sources=sources,
        lower_is_better=lower_is_better,
        x_refs=[ref],
        var=v_all,
    )


def _feasible(candidate: Candidate, data: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> bool:
    """Enough distinct points: each source fixes its own params, and one dof is left."""
    if get_family(candidate.family).positive and any(np.any(y <= 0) for _, y in data.values()):
        return False
    per = candidate.per_source_params()
    counts = [np.unique(x).size for x, _ in data.values()]
    if any(c < max(per, 1) for c in counts):
        return False
    return sum(x.size for x, _ in data.values()) > candidate.n_params(len(data))


def _hold_out_last(data, var=None):
    train, held, train_var = {}, {}, {} if var else None
    for name, (x, y) in data.items():
        last = x == np.max(x)
        train[name] = (x[~last], y[~last])
        held[name] = (float(np.max(x)), float(np.mean(y[last])), int(np.sum(last)))
        if var:
            train_var[name] = np.asarray(var[name])[~last]
    return train, held, train_var


def leave_last_out(
    candidate: Candidate,
    data: Mapping[str, tuple[np.ndarray, np.ndarray]],
    *,
    lower_is_better: bool | None,
    loss: str = "soft_l1",
    var: Mapping[str, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Extrapolation errors of each source's largest-compute point, fitted without it.

    Returns:
        (errors, log_distances, noise_rms): signed errors (predicted - observed, in metric
        units) and log(x_held / largest x kept) per source, and the rms observation noise
        inside those errors (each held-out value is the mean of the runs at its compute:
        the reduced fit's noise scale over the square root of their number); empty arrays
        and NaN when the candidate cannot be fitted on the reduced data.
    """
    train, held, train_var = _hold_out_last(data, var)
    empty = np.empty(0), np.empty(0), math.nan
    if not _feasible(candidate, train):
        return empty
    problem = build_problem(candidate, train, lower_is_better=lower_is_better, var=train_var)
    sol = solve_law(problem, loss=loss)
    if not sol.success:
        return empty
    errs, dists, noise = [], [], []
    for s, name in enumerate(problem.sources):
        x_new, y_new, reps = held[name]
        errs.append(_value_at(problem, sol.theta[problem.layout[s]], x_new) - y_new)
        dists.append(math.log(x_new / float(np.max(train[name][0]))))
        noise.append(sol.noise_sd**2 / reps)
    return np.array(errs), np.array(dists), float(math.sqrt(np.mean(noise)))


def _value_at(problem: LawProblem, theta_s: np.ndarray, compute: float) -> float:
    fam = problem.family
    P = [np.float64(v) for v in theta_s]
    return float(compiled(fam).value([np.float64(compute / problem.x_ref)], P))


@dataclass(frozen=True, slots=True)
class JointResult:
    """A joint fit: per-source LawFits plus the problem and solution behind them."""

    candidate: Candidate
    fits: tuple[LawFit, ...]
    problem: LawProblem | None
    solution: LawSolution | None
    scores: Mapping[str, float]


@dataclass(frozen=True, slots=True)
class _HeldOut:
    """A candidate's leave-last-out errors (see :func:`leave_last_out`) and its score: the
    mean absolute error over the metric's spread, ``inf`` when it could not be held out."""

    errors: np.ndarray
    log_dists: np.ndarray
    noise_rms: float
    score: float

    def summary(self) -> LeaveLastOut | None:
        """What the errors say about extrapolating (None when there are none to go by)."""
        if not (self.errors.size and np.all(np.isfinite(self.errors))):
            return None
        # the held-out extrapolation errors measure what the bootstrap cannot: how wrong
        # the law's shape is one step beyond the data (see predict.predict_interval)
        return LeaveLastOut(
            rmse=float(np.sqrt(np.mean(self.errors**2))),
            n=int(self.errors.size),
            log_dist=float(np.mean(self.log_dists)),
            noise_rmse=self.noise_rms,
        )


@dataclass(frozen=True, slots=True)
class _Solved:
    """One candidate fitted to the whole group."""

    candidate: Candidate
    problem: LawProblem
    solution: LawSolution
    fits: list[LawFit]


def fit_joint(
    group: GroupData,
    *,
    candidates: Sequence[Candidate | str] | None = None,
    n_boot: int = DEFAULT_BOOTSTRAP,
    scheme: str = "parametric",
    loss: str = "soft_l1",
    seed: int = 0,
    method: str = "joint",
    average: bool = True,
) -> JointResult:
    """Fit the sources of one (study, metric) jointly, weighing the candidates by their
    leave-last-out extrapolation error (falling back to simpler candidates when points
    are too few).

    With ``average`` (default) every candidate the held-out errors support is fitted and
    predictions average them by :func:`llo_weights`; each LawFit is the dominant member's
    law (what the allocator and the store use) and lists all members in its ``average``,
    which :func:`planner.laws.predict.predict` and its siblings honour. Without it the
    single candidate with the least error is used.

    Args:
        group: the points per source.
        candidates: candidates to choose among (names such as ``"power[E,alpha]"`` or
            Candidate objects); default: :func:`default_candidates`.
        n_boot, scheme, loss, seed: bootstrap and robust-loss settings.
        method: the label stored in each LawFit.
        average: average the candidates (True) or select the best one (False).

    Returns:
        A JointResult; its fits have ``success=False`` with a message when nothing fits.

    Raises:
        FitError: bad input (no sources, unknown candidate names).
    """
    if not group.data:
        raise FitError(f"No runs for {group.study}/{group.metric}: import runs first.")
    values = np.concatenate([y for _, y in group.data.values()])
    cands = [
        parse_candidate(c) if isinstance(c, str) else c
        for c in (candidates or default_candidates(values, group.metric))
    ]
    feasible = [c for c in cands if _feasible(c, group.data)]
    if not feasible:
        return _failed(group, cands[0], "too few points per source for any candidate law", method)
    spread = float(np.std(values)) or 1.0
    held = {c.name: _hold_out(c, group, loss=loss, spread=spread) for c in feasible}
    scores = {name: h.score for name, h in held.items()}
    members, weights = _weigh(feasible, held, average=average)
    solved: list[_Solved] = []
    for i, c in enumerate(members):
        problem = build_problem(c, group.data, lower_is_better=group.lower_is_better, var=group.var)
        sol = solve_law(problem, loss=loss)
        if not sol.success and (solved or i + 1 < len(members)):
            continue  # a member that cannot be fitted drops out of the average
        boot = sd = None
        if n_boot and sol.success:
            boot, sd = bootstrap(problem, sol, n_boot, scheme=scheme, loss=loss, seed=seed)
        fits = to_lawfits(
            problem,
            sol,
            study=group.study,
            metric=group.metric,
            method=method,
            boot=boot,
            boot_sd=sd,
            candidate=c.name,
            llo_scores=scores,
            llo=held[c.name].summary(),
        )
        solved.append(_Solved(c, problem, sol, fits))
        if not sol.success:
            break
    first = solved[0]
    ok = [m for m in solved if m.solution.success]
    fits = _averaged(ok, weights, held) if len(ok) > 1 else first.fits
    return JointResult(first.candidate, tuple(fits), first.problem, first.solution, scores)


def _hold_out(candidate: Candidate, group: GroupData, *, loss: str, spread: float) -> _HeldOut:
    """A candidate's leave-last-out errors on the group, scored against the spread."""
    errs, dists, noise = leave_last_out(
        candidate, group.data, lower_is_better=group.lower_is_better, loss=loss, var=group.var
    )
    ok = errs.size and np.all(np.isfinite(errs))
    score = float(np.mean(np.abs(errs))) / spread if ok else math.inf
    return _HeldOut(errs, dists, noise, score)


def _weigh(
    feasible: Sequence[Candidate], held: Mapping[str, _HeldOut], *, average: bool
) -> tuple[list[Candidate], dict[str, float]]:
    """The candidates to fit, by weight (simplest first among equals), and their weights."""
    finite = [c for c in feasible if math.isfinite(held[c.name].score)]
    if average and len(finite) > 1:
        weights = llo_weights({c.name: held[c.name].errors for c in finite})
    else:
        # the first candidate with the least error: candidates are ordered simplest first
        best = min(finite, key=lambda c: held[c.name].score) if finite else feasible[0]
        weights = {best.name: 1.0}
    if not finite:
        # nothing could be held out: the simplest law with a trend, since the constant is
        # only worth choosing when held-out points show that a trend does not extrapolate
        trend = [c for c in feasible if c.family != "constant"] or feasible
        weights = {trend[0].name: 1.0}
    # members by weight, simplest first among equals (sorted is stable)
    members = sorted(
        (c for c in (finite or feasible) if weights.get(c.name, 0.0) > 0),
        key=lambda c: -weights[c.name],
    )
    return members, weights


def _averaged(
    ok: Sequence[_Solved], weights: Mapping[str, float], held: Mapping[str, _HeldOut]
) -> list[LawFit]:
    """The dominant member's fits (``ok[0]``), each carrying every member so predictions
    average them, with the leave-last-out errors of the average."""
    total = sum(weights[m.candidate.name] for m in ok)
    w = {m.candidate.name: weights[m.candidate.name] / total for m in ok}
    # the average is one predictor: its shape error is that of its own held-out
    # predictions (the weighted average of the members' held-out errors)
    errs = sum(w[m.candidate.name] * held[m.candidate.name].errors for m in ok)
    parts = [(w[m.candidate.name], held[m.candidate.name].noise_rms) for m in ok]
    noise = None
    if all(math.isfinite(v) for _, v in parts):
        # every member's held-out error holds the same held-out value's noise
        noise = float(math.sqrt(sum(wt * v**2 for wt, v in parts)))
    out = []
    for i, fit in enumerate(ok[0].fits):
        members = tuple(
            AveragedLaw(
                candidate=m.candidate.name,
                family=m.fits[i].family,
                weight=w[m.candidate.name],
                params=dict(m.fits[i].params),
                boot=m.fits[i].boot,
                noise_sd_boot=m.fits[i].noise_sd_boot,
                llo=m.fits[i].llo,
            )
            for m in ok
        )
        llo = LeaveLastOut(
            rmse=float(np.sqrt(np.mean(errs**2))),
            n=int(errs.size),
            log_dist=float(np.mean(held[ok[0].candidate.name].log_dists)),
            # without every member's noise, the dominant member's own
            noise_rmse=noise if noise is not None else _noise_rmse(fit.llo),
        )
        out.append(replace(fit, llo=llo, average=ModelAverage(members)))
    return out


def _noise_rmse(llo: LeaveLastOut | None) -> float:
    return math.nan if llo is None else llo.noise_rmse


def llo_weights(errors: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Model-averaging weights from leave-last-out errors (pseudo-Bayesian model averaging).

    Each candidate's held-out errors are scored by their log predictive density under a
    normal law whose variance is the candidate's own mean squared held-out error, which is
    ``-m/2·log(mse) + const`` for m held-out points; the weights are the normalised
    exponentials of those scores, i.e. proportional to ``mse^(-m/2)``. With only one
    held-out point per source, picking the single best candidate is a noisy decision;
    averaging keeps every candidate the errors do not rule out. Weights below 1% are
    dropped (they would cost a fit and a bootstrap for no visible change).
    """
    names = list(errors)
    m = np.array([errors[k].size for k in names], dtype=float)
    mse = np.array([float(np.mean(np.square(errors[k]))) for k in names])
    # a candidate that extrapolated exactly (noise-free data) takes all the weight
    floor = np.finfo(float).tiny
    logw = -0.5 * m * np.log(np.maximum(mse, floor))
    w = np.exp(logw - np.max(logw))
    w = w / w.sum()
    w = np.where(w >= 0.01, w, 0.0)
    w = w / w.sum()
    return {k: float(v) for k, v in zip(names, w, strict=True)}


def fit_independent(
    group: GroupData,
    *,
    family: str | None = None,
    n_boot: int = DEFAULT_BOOTSTRAP,
    scheme: str = "parametric",
    loss: str = "soft_l1",
    seed: int = 0,
) -> list[LawFit]:
    """One fit per source (no shared parameters); the family is chosen per source by
    leave-last-out error among the unshared candidates when ``family`` is None."""
    out: list[LawFit] = []
    for i, source in enumerate(group.sources):
        sub = GroupData(
            group.study,
            group.metric,
            group.lower_is_better,
            {source: group.data[source]},
            {source: group.var[source]} if group.var else None,
        )
        cands: Sequence[Candidate] = (Candidate(family),) if family else CANDIDATES_INDEPENDENT
        res = fit_joint(
            sub,
            candidates=cands,
            n_boot=n_boot,
            scheme=scheme,
            loss=loss,
            seed=seed + i,
            method="independent",
        )
        out.extend(res.fits)
    return out


def _failed(group: GroupData, cand: Candidate, message: str, method: str) -> JointResult:
    fam = get_family(cand.family)
    fits = tuple(
        LawFit(
            study=group.study,
            metric=group.metric,
            source=s,
            family=cand.family,
            method=method,
            params={p: math.nan for p in fam.param_names},
            success=False,
            message=message,
            n_points=int(group.data[s][0].size),
            x_max=float(np.max(group.data[s][0])) if group.data[s][0].size else math.nan,
            lower_is_better=group.lower_is_better,
        )
        for s in group.sources
    )
    return JointResult(cand, fits, None, None, {})
