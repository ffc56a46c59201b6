"""Choosing between methods across a whole table, by backtests inside its fit sets.

One group's 2–3 held-out points are too few to choose a method with; a table's hundreds of
held-out pairs are not. Every group's fit set is backtested inside itself — each source's
largest fit compute held out, the rest extrapolated to it — by every candidate method:

- ``point-estimate``: each source's value at the largest fitted compute, as if it held;
- ``difference``: the difference model of :mod:`planner.laws.pairwise` (levels from every
  fit point, trends shrunk by the table's empirical-Bayes prior), its common level from the
  joint laws;
- ``joint``: the averaged joint laws of :mod:`planner.laws.joint`, with their bootstrap;
- ``proxy``: a continuous proxy's extrapolation mapped to the metric through a link
  (:mod:`planner.laws.proxy`), where one is named.

Each candidate gives a normal prediction of the group's values (a mean and a covariance,
so differences keep what sources share). What the candidate's own variance misses is
learnt from the table too: an excess variance per source and a common one, each growing
with the square of the extrapolation distance in log-compute, in each group's own units
(:class:`planner.laws.pairwise.TrendScale`). Then the candidates are weighed by stacking:
the weights under which the mixture of their calibrated predictions gives the held-out
differences the highest probability, pooled over the table. The point estimate is one of
the candidates, so the table falls back to it where nothing extrapolates better.

Nothing here is fitted to a particular data set: each table estimates its own prior,
excess variances and weights, and they are reported with its results.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import optimize, stats

from planner.domain import LawFit
from planner.laws.noise import GroupNoise, SourcePoints
from planner.laws.pairwise import (
    PRIOR_GRID,
    DifferenceModel,
    Gaussian,
    TrendPrior,
    TrendScale,
    difference_model,
    estimate_trend_prior,
    hold_out_largest,
    outcome_log_score,
    reduced_model,
    shared_holdout,
)
from planner.laws.proxy import ProxyInput

CANDIDATES = ("point-estimate", "difference", "joint", "proxy")
#: bootstrap replicates of the joint laws fitted inside a fit set (the nested backtest
#: needs their spread, not fine quantiles)
NESTED_BOOTSTRAP = 100
#: level of the intervals
LEVEL = 0.90
#: the nested backtests: each source's largest fit compute held out and extrapolated one
#: step of its ladder from the rest, and its two largest held out and the largest
#: extrapolated two steps (the target lies further out still; two distances let the
#: table see how errors grow with distance)
NESTED_DEPTHS = (1, 2)


@dataclass(frozen=True)
class GroupInput:
    """One (study, metric) group's fit set, as every candidate sees it.

    Attributes:
        points: per source, the seed-averaged fit points with their noise variance.
        noise: the group's evaluation size and seed spread.
        chance: the metric's chance level (NaN when not known).
        proxy: the metric's continuous proxy, when one is named.
    """

    study: str
    metric: str
    lower_is_better: bool
    points: Mapping[str, SourcePoints]
    noise: GroupNoise = field(default_factory=GroupNoise)
    chance: float = math.nan
    proxy: ProxyInput | None = None

    @property
    def sources(self) -> tuple[str, ...]:
        return tuple(self.points)

    @property
    def x_pe(self) -> float:
        """The largest compute every source has reached (the point estimate's)."""
        return min(float(np.max(p.x)) for p in self.points.values())

    @property
    def is_proportion(self) -> bool:
        """A metric with an evaluation size is a share of items: it stays in [0, 1]."""
        return math.isfinite(self.noise.n_items) and all(
            bool(np.all((p.y >= 0) & (p.y <= 1))) for p in self.points.values()
        )


@dataclass(frozen=True)
class Case:
    """One group predicted at one compute: its real target, or a nested held-out point.

    Attributes:
        sources: the group's sources.
        compute: where the values are predicted.
        distance: log(compute / the largest compute every source was fitted at).
        scale: the group's units for trends and excess variance.
        noise: per source, the variance of a measurement at ``compute``.
        fixed: the predictions of the candidates that do not depend on the table.
        difference: the difference model (its prediction depends on the table's prior).
        observed: per source, the held-out value (NaN where not held out here); None for
            a real target.
        level_sd: per source, the joint laws' own predictive standard deviation (with
            their held-out shape error and the noise); None when they have none.
    """

    sources: tuple[str, ...]
    compute: float
    distance: float
    scale: TrendScale
    noise: np.ndarray
    fixed: Mapping[str, Gaussian]
    difference: DifferenceModel | None
    observed: np.ndarray | None = None
    level_sd: np.ndarray | None = None

    def pairs(self) -> list[tuple[int, int]]:
        """Pairs of sources, in order; in a nested case only the pairs both held out here."""
        S = len(self.sources)
        out = []
        for a in range(S):
            for b in range(a + 1, S):
                if self.observed is None or (
                    math.isfinite(self.observed[a]) and math.isfinite(self.observed[b])
                ):
                    out.append((a, b))
        return out


@dataclass(frozen=True)
class Evidence:
    """What the table needs of one group: its target case and its nested cases.

    Attributes:
        law: the joint laws' label (what the averaged laws are).
        fits: the joint fits of the whole fit set (empty when they failed).
        proportion: whether the metric is a share of items (predictions stay in [0, 1]).
    """

    study: str
    metric: str
    lower_is_better: bool
    target: Case
    nested: tuple[Case, ...]
    law: str = ""
    fits: tuple[LawFit, ...] = ()
    proportion: bool = False


def _gaussian_from_draws(sources: tuple[str, ...], point: np.ndarray, draws: np.ndarray):
    ok = np.all(np.isfinite(draws), axis=1)
    d = draws[ok]
    if d.shape[0] < 10 or not np.all(np.isfinite(point)):
        return None
    cov = np.atleast_2d(np.cov(d.T))
    return Gaussian(sources, np.asarray(point, dtype=float), cov)


def _joint(group: GroupInput, points: Mapping[str, SourcePoints], compute: float, n_boot: int):
    """The averaged joint laws fitted on ``points``, predicted at ``compute``."""
    from planner.laws.decision import value_draws
    from planner.laws.joint import fit_joint

    res = fit_joint(noisy_group(group, points), n_boot=n_boot)
    fits = tuple(res.fits)
    if not fits or not all(f.success for f in fits) or any(f.boot is None for f in fits):
        return None, fits
    vd = value_draws(fits, [compute])
    return _gaussian_from_draws(group.sources, vd.point[:, 0], vd.draws[:, :, 0]), fits


def noisy_group(group: GroupInput, points: Mapping[str, SourcePoints]):
    """The joint laws' view of ``points``: with each point's variance where every one is
    known (the fits then weigh points by its inverse)."""
    from planner.laws.joint import GroupData

    data = {s: (p.x, p.y) for s, p in points.items()}
    known = all(bool(np.all(np.isfinite(p.var) & (p.var > 0))) for p in points.values())
    var = {s: p.var for s, p in points.items()} if known else None
    return GroupData(group.study, group.metric, group.lower_is_better, data, var)


def _interval_sd(fits: Sequence[LawFit], sources: Sequence[str], compute: float):
    """Per source, the joint laws' own prediction interval at ``compute`` as a standard
    deviation (parameters, noise and their held-out shape error; see
    :func:`planner.laws.predict.predict_interval`); None where a fit has none."""
    from planner.laws.predict import DEFAULT_LEVEL, predict_interval

    by = {f.source: f for f in fits}
    z = float(stats.norm.ppf(0.5 + DEFAULT_LEVEL / 2.0))
    out = []
    for s in sources:
        f = by.get(s)
        if f is None or not f.success:
            return None
        _, low, high = predict_interval(f, [compute], DEFAULT_LEVEL)
        if not (np.isfinite(low[0]) and np.isfinite(high[0])):
            return None
        out.append((float(high[0]) - float(low[0])) / (2.0 * z))
    return np.array(out)


def _levels_at(points: Mapping[str, SourcePoints], x: float, dm: DifferenceModel | None):
    """Each source's measured value at ``x`` (the point estimate) and its noise."""
    mean, var = [], []
    for p in points.values():
        u = np.log(p.x)
        mean.append(float(np.interp(math.log(x), u, p.y)))
        v = float(np.interp(math.log(x), u, p.var)) if p.var.size else math.nan
        if dm is not None and dm.noise_known and math.isfinite(v):
            var.append(v * dm.dispersion)
        elif dm is not None:
            var.append(dm.noise_var)
        else:
            var.append(math.nan)
    return np.array(mean), np.array(var)


def _measurement_noise(
    group: GroupInput, level: np.ndarray, dm: DifferenceModel | None, fits: Sequence[LawFit]
) -> np.ndarray:
    """Per source, the variance of a measurement at the target (as the fit points were
    measured: the same evaluation size, the same number of runs)."""
    reps = float(np.median(np.concatenate([p.reps for p in group.points.values()])))
    if dm is not None and dm.noise_known:
        return group.noise.mean_variance(level, reps) * dm.dispersion
    if dm is not None:
        return np.full(level.size, dm.noise_var)
    sds = [float(f.noise_sd) for f in fits]
    sd = float(np.nanmedian(sds)) if sds and np.isfinite(sds).any() else math.nan
    return np.full(level.size, sd * sd)


def gather(
    group: GroupInput,
    compute: float,
    *,
    candidates: Sequence[str] = CANDIDATES,
    n_boot: int = 400,
) -> Evidence:
    """Everything the table needs of one group (a worker process's unit of work).

    Args:
        group: the group's fit set.
        compute: the target compute.
        candidates: which candidates to prepare.
        n_boot: bootstrap replicates of the joint laws at the target.
    """
    points = group.points
    sources = group.sources
    dm = difference_model(points, floor=group.chance) if "difference" in candidates else None
    dm_noise = dm if dm is not None else difference_model(points)
    x_pe = group.x_pe
    fixed: dict[str, Gaussian] = {}
    pe_mean, pe_var = _levels_at(points, x_pe, dm_noise)
    if "point-estimate" in candidates or "difference" in candidates:
        fixed["point-estimate"] = Gaussian(sources, pe_mean, np.diag(np.nan_to_num(pe_var)))
    fits: tuple[LawFit, ...] = ()
    law = ""
    if "joint" in candidates or "difference" in candidates or "proxy" in candidates:
        g, fits = _joint(group, points, compute, n_boot)
        if g is not None:
            fixed["joint"] = g
        law = ",".join(sorted({_law(f) for f in fits if f.success})) or "-"
    if "proxy" in candidates and group.proxy is not None:
        from planner.laws.proxy import proxy_prediction

        g = proxy_prediction(group, points, compute, n_boot=n_boot)
        if g is not None:
            fixed["proxy"] = g
    level = fixed["joint"].mean if "joint" in fixed else pe_mean
    noise = _measurement_noise(group, level, dm_noise, fits)
    scale = dm_noise.scale if dm_noise is not None else TrendScale(0.0, 0.0)
    target = Case(
        sources=sources,
        compute=float(compute),
        distance=math.log(compute / x_pe),
        scale=scale,
        noise=noise,
        fixed=fixed,
        difference=dm,
        level_sd=_interval_sd(fits, sources, compute) if "joint" in fixed else None,
    )
    nested = tuple(
        c
        for depth in NESTED_DEPTHS
        if (c := _nested(group, candidates, dm_noise, depth)) is not None
    )
    return Evidence(
        study=group.study,
        metric=group.metric,
        lower_is_better=group.lower_is_better,
        target=target,
        nested=nested,
        law=law,
        fits=fits,
        proportion=group.is_proportion,
    )


def _law(fit: LawFit) -> str:
    return fit.law


def _nested(
    group: GroupInput,
    candidates: Sequence[str],
    dm_full: DifferenceModel | None,
    depth: int = 1,
) -> Case | None:
    """The group's fit set backtested inside itself: each source's ``depth`` largest
    computes held out, the largest of them predicted from the rest."""
    rest, held = hold_out_largest(group.points, depth)
    if any(p.x.size < 2 for p in rest.values()):
        return None
    shared = shared_holdout(held, group.sources)
    if shared is None:
        return None
    compute, idx = shared
    observed = np.array([held[s][1] if i in idx else math.nan for i, s in enumerate(group.sources)])
    sources = group.sources
    dm = None
    if dm_full is not None and "difference" in candidates:
        dm = reduced_model(group.points, dm_full, depth)
    x_pe = min(float(np.max(p.x)) for p in rest.values())
    pe_mean, pe_var = _levels_at(rest, x_pe, dm_full)
    fixed: dict[str, Gaussian] = {
        "point-estimate": Gaussian(sources, pe_mean, np.diag(np.nan_to_num(pe_var)))
    }
    sub = GroupInput(
        group.study,
        group.metric,
        group.lower_is_better,
        rest,
        group.noise,
        group.chance,
        None,
    )
    fits: tuple[LawFit, ...] = ()
    if "joint" in candidates or "difference" in candidates or "proxy" in candidates:
        g, fits = _joint(sub, rest, compute, NESTED_BOOTSTRAP)
        if g is not None:
            fixed["joint"] = g
    if "proxy" in candidates and group.proxy is not None:
        from planner.laws.proxy import proxy_prediction, without_largest

        proxied = GroupInput(
            group.study,
            group.metric,
            group.lower_is_better,
            rest,
            group.noise,
            group.chance,
            without_largest(group.proxy, depth),
        )
        g = proxy_prediction(proxied, rest, compute, n_boot=NESTED_BOOTSTRAP)
        if g is not None:
            fixed["proxy"] = g
    held_var = np.array([held[s][2] for s in sources])
    if dm_full is not None and dm_full.noise_known:
        noise = held_var * dm_full.dispersion
    elif dm_full is not None:
        noise = np.full(len(sources), dm_full.noise_var)
    else:
        noise = _measurement_noise(sub, pe_mean, None, fits)
    scale = dm.scale if dm is not None else (dm_full.scale if dm_full else TrendScale(0, 0))
    return Case(
        sources=sources,
        compute=float(compute),
        distance=math.log(compute / x_pe),
        scale=scale,
        noise=noise,
        fixed=fixed,
        difference=dm,
        observed=observed,
    )


# ------------------------------------------------------------------ the table's choices

#: how a candidate's excess variance may grow with the extrapolation distance d (in
#: log-compute): as d (a drift that wanders like a random walk) or as d² (a trend that is
#: wrong by a fixed slope); each table chooses from its nested backtests at two distances
GROWTH_POWERS = (1, 2)


def growth(distance: float | np.ndarray, power: int) -> float | np.ndarray:
    """The factor a unit excess variance is multiplied by at ``distance``."""
    return np.abs(distance) ** power


@dataclass(frozen=True, slots=True)
class Excess:
    """A candidate's variance for differences beyond its own: per source
    growth(d)·(k_b²·b² + k_n²·(σ/U)²) in each group's units (see
    :class:`planner.laws.pairwise.TrendScale`), chosen on the outcomes of held-out pairs
    (what calibrates P(a beats b)).

    Attributes:
        k: (k_b, k_n).
        power: how it grows with the distance (:data:`GROWTH_POWERS`).
    """

    k: tuple[float, float] = (0.0, 0.0)
    power: int = 2
    #: for the intervals: a source's deviation from the group's mean, growth(d)·k²·(b² +
    #: (σ/U)²) with its own power, chosen on the held-out deviations themselves
    deviation: float = 0.0
    deviation_power: int = 2

    def variance(self, case: Case) -> float:
        return float(growth(case.distance, self.power) * case.scale.variance(self.k))

    def deviation_variance(self, case: Case) -> float:
        return float(
            growth(case.distance, self.deviation_power) * self.deviation**2 * case.scale.total
        )


@dataclass(frozen=True, slots=True)
class LevelExcess:
    """The common level's variance beyond the joint laws' own: growth(d)·k²·(b² + (σ/U)²),
    chosen on the held-out mean values of the groups (for the intervals).

    Attributes:
        k: the multiplier.
        power: how it grows with the distance (:data:`GROWTH_POWERS`).
    """

    k: float = 0.0
    power: int = 2

    def variance(self, case: Case) -> float:
        return float(growth(case.distance, self.power) * self.k**2 * case.scale.total)


@dataclass(frozen=True)
class TableModel:
    """What a table chose: the trend prior, each candidate's excess variance and weight.

    Attributes:
        prior: the difference model's trend prior.
        excess: per candidate, its excess variance for differences.
        level: the common level's excess variance.
        weights: per candidate, its stacking weight (they sum to 1).
        pairs: held-out pairs the weights were chosen on; groups: groups with a nested case.
        log_score: per candidate, the mean log score of the held-out pairs' outcomes under
            its calibrated prediction alone.
    """

    prior: TrendPrior
    excess: Mapping[str, Excess]
    weights: Mapping[str, float]
    level: LevelExcess = field(default_factory=LevelExcess)
    pairs: int = 0
    groups: int = 0
    log_score: Mapping[str, float] = field(default_factory=dict)

    def summary(self) -> dict[str, object]:
        """The choices as plain values (for a report or JSON)."""
        return {
            "weights": {k: round(v, 4) for k, v in self.weights.items()},
            "trend_prior": {
                "k_level": self.prior.k_level,
                "k_log": self.prior.k_log,
                "held_out_pairs": self.prior.pairs,
                "log_score": _round(self.prior.log_score),
                "no_trend_log_score": _round(self.prior.no_trend_log_score),
            },
            "excess": {
                k: {
                    "k": list(e.k),
                    "power": e.power,
                    "deviation": e.deviation,
                    "deviation_power": e.deviation_power,
                }
                for k, e in self.excess.items()
            },
            "level_excess": {"k": self.level.k, "power": self.level.power},
            "held_out_log_score": {k: _round(v) for k, v in self.log_score.items()},
            "held_out_pairs": self.pairs,
            "groups": self.groups,
        }


def _round(v: float) -> float | None:
    return round(v, 4) if math.isfinite(v) else None


def common_level(case: Case) -> tuple[float, float]:
    """The group's mean value at the case's compute and its variance: from the joint laws,
    else the point estimate (no progress); NaN when neither predicts it."""
    common = case.fixed.get("joint") or case.fixed.get("point-estimate")
    if common is None or not np.all(np.isfinite(common.mean)):
        return math.nan, 0.0
    S = len(case.sources)
    return float(np.mean(common.mean)), float(np.sum(common.cov)) / S**2


def candidate_prediction(case: Case, name: str, prior: TrendPrior) -> Gaussian | None:
    """A candidate's own prediction for a case (before the table's excess variance).

    The difference model predicts deviations between sources; its values are the common
    level (:func:`common_level`) plus those deviations.
    """
    if name != "difference":
        return case.fixed.get(name)
    if case.difference is None:
        return None
    level, level_var = common_level(case)
    if not math.isfinite(level):
        return None
    dev = case.difference.deviations(
        case.compute, level, level_var, prior.variances(case.difference.scale)
    )[0]
    S = len(case.sources)
    D = np.eye(S) - 1.0 / S
    mean = level + D @ dev.mean
    cov = level_var * np.ones((S, S)) + D @ dev.cov @ D.T
    return Gaussian(case.sources, mean, cov)


def _pair_terms(case: Case, g: Gaussian) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per held-out pair: the observed difference, the predicted one, and its variance
    with the two measurements' noise."""
    obs, mu, var = [], [], []
    for a, b in case.pairs():
        m, v = g.difference(a, b)
        obs.append(case.observed[a] - case.observed[b])
        mu.append(m)
        var.append(v + float(np.nan_to_num(case.noise[a] + case.noise[b])))
    return np.array(obs), np.array(mu), np.array(var)


_GRID = np.stack(np.meshgrid(PRIOR_GRID, PRIOR_GRID, indexing="ij"), axis=-1).reshape(-1, 2)


def _log_normal(r: np.ndarray, var: np.ndarray) -> np.ndarray:
    var = np.maximum(var, 1e-300)
    return -0.5 * (np.log(2.0 * np.pi * var) + r * r / var)


def _fit_excess(cases: Sequence[tuple[Case, Gaussian]]) -> Excess:
    """The excess (k_b, k_n, power) under which the held-out pairs' outcomes are most
    probable."""
    best, best_score = Excess(), -math.inf
    for power in GROWTH_POWERS:
        total = np.zeros(_GRID.shape[0])
        for case, g in cases:
            obs, mu, var = _pair_terms(case, g)
            if obs.size == 0:
                continue
            add = 2.0 * growth(case.distance, power) * case.scale.variance(_GRID)  # (G,)
            score = outcome_log_score(mu[None, :], var[None, :] + add[:, None], obs[None, :])
            total += score.sum(axis=1)
        i = int(np.argmax(total))
        # ties go to the first power and the smallest excess
        if total[i] > best_score + 1e-9:
            best, best_score = Excess((float(_GRID[i, 0]), float(_GRID[i, 1])), power), total[i]
    return best


def _fit_deviation_excess(cases: Sequence[tuple[Case, Gaussian]]) -> tuple[float, int]:
    """The excess (multiplier, power) under which each held-out source's deviation from
    its group's held-out mean is most probable under a candidate's predicted deviation."""
    best, best_score = (0.0, GROWTH_POWERS[0]), -math.inf
    for power in GROWTH_POWERS:
        total = np.zeros(PRIOR_GRID.size)
        for case, g in cases:
            keep = np.isfinite(case.observed)
            if not keep.all():
                continue
            S = len(case.sources)
            D = np.eye(S) - 1.0 / S
            r = D @ case.observed - D @ g.mean
            noise = np.nan_to_num(case.noise)
            own = np.diag(D @ (g.cov + np.diag(noise)) @ D.T)
            add = growth(case.distance, power) * PRIOR_GRID**2 * case.scale.total * (1 - 1 / S)
            total += _log_normal(r[None, :], own[None, :] + add[:, None]).sum(axis=1)
        i = int(np.argmax(total))
        if total[i] > best_score + 1e-9:
            best, best_score = (float(PRIOR_GRID[i]), power), total[i]
    return best


def _fit_level_excess(cases: Sequence[Case]) -> LevelExcess:
    """The common level's excess under which the held-out mean values are most probable."""
    best, best_score = LevelExcess(), -math.inf
    for power in GROWTH_POWERS:
        total = np.zeros(PRIOR_GRID.size)
        for case in cases:
            keep = np.isfinite(case.observed)
            level, level_var = common_level(case)
            if not keep.all() or not math.isfinite(level):
                continue
            S = len(case.sources)
            r = float(np.mean(case.observed)) - level
            var = level_var + float(np.sum(np.nan_to_num(case.noise))) / S**2
            add = growth(case.distance, power) * PRIOR_GRID**2 * case.scale.total
            total += _log_normal(np.array(r), var + add)
        i = int(np.argmax(total))
        if total[i] > best_score + 1e-9:
            best, best_score = LevelExcess(float(PRIOR_GRID[i]), power), total[i]
    return best


def _stack(probabilities: np.ndarray, present: np.ndarray) -> np.ndarray:
    """Stacking weights: maximise Σ log Σ_m w_m p_m over held-out pairs.

    Args:
        probabilities: (pairs, M) each candidate's probability of what happened (0 where
            a candidate is absent).
        present: (pairs, M) whether each candidate predicted that pair; a pair's mixture
            is renormalised over its present candidates.
    """
    M = probabilities.shape[1]
    if M == 1:
        return np.ones(1)

    def loss(z: np.ndarray) -> float:
        w = np.exp(z - np.max(z))
        w = w / w.sum()
        num = probabilities @ w
        den = present @ w
        return -float(np.sum(np.log(np.maximum(num / den, 1e-300))))

    best = None
    for start in [np.zeros(M), *np.eye(M) * 3.0]:
        res = optimize.minimize(loss, start, method="Nelder-Mead", options={"xatol": 1e-4})
        if best is None or res.fun < best.fun:
            best = res
    w = np.exp(best.x - np.max(best.x))
    w = w / w.sum()
    w = np.where(w >= 0.005, w, 0.0)
    return w / w.sum()


def _pair_probability(case: Case, g: Gaussian, excess: Excess, a: int, b: int) -> float:
    """P(source a's measured value exceeds b's) under a candidate's calibrated prediction
    (not yet direction-aware)."""
    m, v = g.difference(a, b)
    var = v + float(np.nan_to_num(case.noise[a] + case.noise[b])) + 2.0 * excess.variance(case)
    return float(stats.norm.cdf(m / math.sqrt(max(var, 1e-300))))


def estimate_table(
    evidence: Sequence[Evidence], candidates: Sequence[str] = CANDIDATES
) -> TableModel:
    """The table's prior, excess variances and stacking weights from its nested cases.

    Args:
        evidence: every group's evidence (see :func:`gather`).
        candidates: the candidates to weigh (those with no prediction anywhere get none).
    """
    from planner.laws.pairwise import NestedPairs

    nested = [c for e in evidence for c in e.nested]
    prior = TrendPrior(0.0, 0.0)
    if "difference" in candidates:
        cases = []
        for c in nested:
            pairs = c.pairs()
            level, level_var = common_level(c)
            if c.difference is None or not pairs or not math.isfinite(level):
                continue
            cases.append(
                NestedPairs(
                    c.difference,
                    c.compute,
                    level,
                    level_var,
                    tuple(pairs),
                    np.array([c.observed[a] - c.observed[b] for a, b in pairs]),
                    np.array([float(np.nan_to_num(c.noise[a] + c.noise[b])) for a, b in pairs]),
                )
            )
        prior = estimate_trend_prior(cases)
    level = _fit_level_excess(nested)
    names = [m for m in candidates if any(m == "difference" or m in c.fixed for c in nested)]
    excess: dict[str, Excess] = {}
    own: dict[str, list[tuple[Case, Gaussian]]] = {}
    for m in names:
        own[m] = [
            (c, g)
            for c in nested
            if c.pairs() and (g := candidate_prediction(c, m, prior)) is not None
        ]
        pair = _fit_excess(own[m])
        k, power = _fit_deviation_excess(own[m])
        excess[m] = Excess(pair.k, pair.power, k, power)
    names = [m for m in names if own[m]]
    # every held-out pair (that did not tie), with each candidate's probability of what
    # happened under its calibrated prediction
    rows: list[list[float]] = []
    present: list[list[float]] = []
    for c in nested:
        preds = {m: candidate_prediction(c, m, prior) for m in names}
        for a, b in c.pairs():
            d = c.observed[a] - c.observed[b]
            if d == 0:
                continue
            row, here = [], []
            for m in names:
                g = preds[m]
                if g is None:
                    row.append(0.0)
                    here.append(0.0)
                    continue
                p = _pair_probability(c, g, excess[m], a, b)
                row.append(p if d > 0 else 1.0 - p)
                here.append(1.0)
            rows.append(row)
            present.append(here)
    if not names:
        return TableModel(prior, {}, {"point-estimate": 1.0}, level)
    if not rows:
        fallback = "point-estimate" if "point-estimate" in names else names[0]
        return TableModel(prior, excess, {fallback: 1.0}, level)
    probs = np.array(rows)
    pres = np.array(present)
    w = _stack(probs, pres)
    scores = {}
    for j, m in enumerate(names):
        here = pres[:, j] > 0
        scores[m] = (
            float(np.mean(np.log(np.maximum(probs[here, j], 1e-300)))) if here.any() else math.nan
        )
    return TableModel(
        prior=prior,
        excess=excess,
        weights={m: float(w[j]) for j, m in enumerate(names) if w[j] > 0},
        level=level,
        pairs=int(probs.shape[0]),
        groups=sum(1 for e in evidence if e.nested),
        log_score=scores,
    )


@dataclass(frozen=True)
class TablePrediction:
    """The table's prediction for one group at its target.

    Attributes:
        sources: in order; value, low, high: per source, the predicted value and its 90%
            interval; p_beats: per pair (a, b) in source order, P(a beats b).
        weights: the candidates' weights used here (renormalised over those present).
    """

    sources: tuple[str, ...]
    value: np.ndarray
    low: np.ndarray
    high: np.ndarray
    p_beats: Mapping[tuple[str, str], float]
    weights: Mapping[str, float]


def predict(evidence: Evidence, table: TableModel) -> TablePrediction | None:
    """The table's prediction at the target: levels from the laws, differences from the
    weighted candidates.

    The group's common level is the joint laws' (else the point estimate's); each source's
    deviation from it is the weighted mixture of the candidates' deviations, whose
    calibrated differences also give P(a beats b). A source's interval has the joint laws'
    own predictive spread for its level (else the common level's with the table's level
    excess and the noise), plus the deviations' spread.

    Returns:
        None when no weighted candidate predicts this group.
    """
    case = evidence.target
    S = len(case.sources)
    D = np.eye(S) - 1.0 / S
    level, level_var = common_level(case)
    if not math.isfinite(level):
        return None
    level_var += table.level.variance(case)
    noise = np.nan_to_num(case.noise)  # a measurement's own noise
    if case.level_sd is not None:
        # the joint laws' own intervals (their held-out shape error and the noise) carry
        # each source's level; the deviations' uncertainty comes on top
        level_var, noise = case.level_sd**2, np.zeros(S)
    else:
        level_var = np.full(S, level_var)
    comps = []
    for m, w in table.weights.items():
        g = candidate_prediction(case, m, table.prior)
        if g is None or not np.all(np.isfinite(g.mean)):
            continue
        comps.append((m, w, g, table.excess.get(m, Excess())))
    if not comps:
        return None
    total = sum(c[1] for c in comps)
    comps = [(m, w / total, g, e) for m, w, g, e in comps]
    lo_b, hi_b = (0.0, 1.0) if evidence.proportion else (-math.inf, math.inf)
    devs = [(w, D @ g.mean, D @ g.cov @ D.T, e) for _, w, g, e in comps]
    value = _inside(level, sum(w * dm for w, dm, _, _ in devs), lo_b, hi_b)
    low, high = np.empty(S), np.empty(S)
    tail = (1.0 - LEVEL) / 2.0
    for s in range(S):
        parts = []
        for w, dm, dc, e in devs:
            var = level_var[s] + dc[s, s] + noise[s] + e.deviation_variance(case) * (1 - 1 / S)
            parts.append((w, level + dm[s], math.sqrt(max(var, 1e-300))))
        low[s] = min(max(_mixture_quantile(parts, tail), lo_b), hi_b)
        high[s] = min(max(_mixture_quantile(parts, 1.0 - tail), lo_b), hi_b)
    p_beats = {}
    for a in range(S):
        for b in range(a + 1, S):
            p = sum(w * _pair_probability(case, g, e, a, b) for _, w, g, e in comps)
            p_beats[(case.sources[a], case.sources[b])] = 1.0 - p if evidence.lower_is_better else p
    return TablePrediction(case.sources, value, low, high, p_beats, {c[0]: c[1] for c in comps})


def _inside(level: float, deviation: np.ndarray, low: float, high: float) -> np.ndarray:
    """level + deviation, kept inside [low, high] without changing the sources' order.

    A bounded metric's predicted level may run past its bound (a law extrapolating an
    accuracy beyond 1); clipping each value would tie the sources there. The level is
    moved, and where the deviations are wider than the range they are narrowed, so every
    value is inside and the order stays the one the deviations give.
    """
    if not (math.isfinite(low) or math.isfinite(high)):
        return level + deviation
    spread = float(np.ptp(deviation))
    room = high - low
    if spread > room:
        deviation = deviation * (room / spread) * (1.0 - 1e-9)
    top, bottom = float(np.max(deviation)), float(np.min(deviation))
    level = min(max(level, low - bottom), high - top)
    return np.clip(level + deviation, low, high)


def _mixture_quantile(parts: Sequence[tuple[float, float, float]], q: float) -> float:
    """The q-quantile of a mixture of normals given as (weight, mean, sd)."""
    if len(parts) == 1:
        _, m, sd = parts[0]
        return float(stats.norm.ppf(q, m, sd))

    def cdf(x: float) -> float:
        return sum(w * float(stats.norm.cdf(x, m, sd)) for w, m, sd in parts) - q

    lo = min(m - 10 * sd for _, m, sd in parts)
    hi = max(m + 10 * sd for _, m, sd in parts)
    return float(optimize.brentq(cdf, lo, hi))
