"""The difference model's view of a group: posterior draws of every pairwise difference
along the compute ladder.

:mod:`planner.laws.pairwise` models a group's values as a common curve plus, per source, a
level and two trends shrunk toward zero (along the common level, and in log-compute). Here
that model is solved under the group's trend prior — estimated, as the table does, by
empirical Bayes over the nested backtests of the groups given together (each source's
largest one and two fit computes held out and predicted from the rest) — and its posterior
is drawn. A draw of d_ab(x) = y_a − y_b is the difference of the two sources' drawn
deviations at x (see :class:`PairwiseView`); two sources cross between ``low`` and
``high`` in a draw when it changes sign there.

What every source shares cancels in a difference, so the draws need none of the common
curve's uncertainty; a measurement's own noise is not added (a crossing is of the curves,
not of two runs).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from planner.domain import LawFit, Observation, is_control
from planner.laws.noise import RunPoint, SourcePoints, averaged, group_noise
from planner.laws.pairwise import (
    DifferenceModel,
    NestedPairs,
    TrendPrior,
    difference_model,
    estimate_trend_prior,
    hold_out_largest,
    reduced_model,
    shared_holdout,
)

#: posterior draws per view
DRAWS = 400
#: computes of the grid a crossing is searched on
GRID_POINTS = 256
#: nested backtests per group (as :data:`planner.laws.table.NESTED_DEPTHS`)
DEPTHS = (1, 2)


@dataclass(frozen=True)
class PairwiseView:
    """Posterior draws of one group's deviations from its common curve.

    A draw's deviation of source s at compute x is

        level_s + trend_s·(h(x) − h̄) + log_trend_s·(log x − ū),

    with h(x) the group's common level there: ``common`` when given (the mean of the
    group's fitted laws, which extrapolate a loss's flattening or an accuracy's rise),
    else the straight line in log-compute through the model's per-compute levels.

    Attributes:
        study, metric: the group.
        sources: source names, in the order of the draws' second axis.
        u_center: ū; h_center: h̄ (the floor where the metric has one).
        level, trend, log_trend: (n, S) each draw's coefficients.
        line: (h at ū, slope per unit log-compute) of the straight common line.
        prior: the trend prior the posterior was drawn under.
        common: the common level h(x) (vectorised over x), or None for the line.
    """

    study: str
    metric: str
    sources: tuple[str, ...]
    u_center: float
    h_center: float
    level: np.ndarray
    trend: np.ndarray
    log_trend: np.ndarray
    line: tuple[float, float]
    prior: TrendPrior
    common: Callable[[np.ndarray], np.ndarray] | None = None

    def index(self, source: str) -> int:
        return self.sources.index(source)

    def common_level(self, compute: np.ndarray) -> np.ndarray:
        """h(x) at each compute (see the class)."""
        x = np.asarray(compute, dtype=float)
        if self.common is not None:
            try:
                h = np.asarray(self.common(x), dtype=float)
            except Exception:  # a law that cannot be evaluated there: the line stands in
                h = np.full(x.shape, np.nan)
            if np.all(np.isfinite(h)):
                return h
        return self.line[0] + self.line[1] * (np.log(x) - self.u_center)

    def deviation_draws(self, compute: np.ndarray) -> np.ndarray:
        """(n, S, k) each draw's deviation of each source at each compute."""
        x = np.atleast_1d(np.asarray(compute, dtype=float))
        dh = self.common_level(x) - self.h_center  # (k,)
        du = np.log(x) - self.u_center
        return (
            self.level[:, :, None]
            + self.trend[:, :, None] * dh[None, None, :]
            + self.log_trend[:, :, None] * du[None, None, :]
        )

    def deviations(self, compute: float) -> np.ndarray:
        """(n, S) each draw's deviations at ``compute``, centred on their mean over sources."""
        d = self.deviation_draws([compute])[:, :, 0]
        return d - d.mean(axis=1, keepdims=True)

    def differences(self, a: str, b: str, compute: np.ndarray) -> np.ndarray:
        """(n, k) draws of d_ab = y_a − y_b at each compute."""
        d = self.deviation_draws(compute)
        return d[:, self.index(a), :] - d[:, self.index(b), :]


@dataclass(frozen=True)
class PairCrossing:
    """Where the difference model says two sources cross between ``low`` and ``high``.

    Attributes:
        probability: share of the posterior draws whose difference changes sign in the
            range.
        compute: where the posterior mean difference first changes sign (NaN when it does
            not in the range).
        samples: the first crossing compute of each draw that crosses.
        a_ahead_after: the share of the crossing draws in which a's value is above b's at
            ``high`` (NaN when none crosses).
    """

    probability: float
    compute: float
    samples: np.ndarray
    a_ahead_after: float


def pair_crossing(
    view: PairwiseView, a: str, b: str, low: float, high: float, *, points: int = GRID_POINTS
) -> PairCrossing:
    """The difference model's crossing of ``a`` and ``b`` in [low, high], found on a log
    grid of ``points`` computes (a root interpolated linearly in log x within its cell)."""
    grid = np.geomspace(low, high, points)
    lx = np.log(grid)
    d = view.differences(a, b, grid)  # (n, k)
    s = np.sign(d)
    change = (s[:, :-1] * s[:, 1:]) < 0
    crosses = change.any(axis=1) & np.all(np.isfinite(d), axis=1)
    probability = float(np.mean(crosses)) if d.shape[0] else math.nan
    rows = np.flatnonzero(crosses)
    first = np.argmax(change[rows], axis=1)
    d0, d1 = d[rows, first], d[rows, first + 1]
    samples = np.exp(lx[first] + d0 / (d0 - d1) * (lx[first + 1] - lx[first]))
    mean = d.mean(axis=0)
    sm = np.sign(mean)
    idx = np.flatnonzero((sm[:-1] * sm[1:]) < 0)
    compute = math.nan
    if idx.size:
        i = int(idx[0])
        compute = float(np.exp(lx[i] + mean[i] / (mean[i] - mean[i + 1]) * (lx[i + 1] - lx[i])))
    ahead = float(np.mean(d[rows, -1] > 0)) if rows.size else math.nan
    return PairCrossing(probability, compute, samples, ahead)


def _common_line(model: DifferenceModel) -> tuple[float, float]:
    """(h at ū, slope) of the straight line in log-compute through the model's common
    levels (each point's common level is in its source's level-trend column)."""
    h = model.X[:, model.g_cols].sum(axis=1) + model.h_center
    u = model.X[:, model.t_cols].sum(axis=1)  # u − ū
    w = 1.0 / model.var
    if np.ptp(u) == 0:
        return float(np.average(h, weights=w)), 0.0
    slope, intercept = np.polyfit(u, h, 1, w=np.sqrt(w))
    return float(intercept), float(slope)


def _nested(points: Mapping[str, SourcePoints], full: DifferenceModel, depth: int):
    """One nested backtest of a group for the prior (see :class:`NestedPairs`): the common
    level at the held-out compute from the reduced fit set's common line."""
    model = reduced_model(points, full, depth)
    if model is None:
        return None
    _, held = hold_out_largest(points, depth)
    shared = shared_holdout(held, model.sources)
    if shared is None:
        return None
    compute, idx = shared
    h0, hs = _common_line(model)
    level = h0 + hs * (math.log(compute) - model.u_center)
    pairs = tuple((a, b) for n, a in enumerate(idx) for b in idx[n + 1 :])
    names = model.sources
    obs = np.array([held[names[a]][1] - held[names[b]][1] for a, b in pairs])
    if full.noise_known:
        var = np.array([held[names[a]][2] + held[names[b]][2] for a, b in pairs])
        var = var * full.dispersion
    else:  # the points' one estimated variance, for each of the two
        var = np.full(len(pairs), 2.0 * full.noise_var)
    return NestedPairs(model, compute, level, 0.0, pairs, obs, np.nan_to_num(var))


def draw_view(
    study: str,
    metric: str,
    model: DifferenceModel,
    prior: TrendPrior,
    *,
    draws: int = DRAWS,
    seed: int = 0,
    common: Callable[[np.ndarray], np.ndarray] | None = None,
) -> PairwiseView:
    """Draw the posterior of ``model`` under ``prior`` (see :class:`PairwiseView`)."""
    mean, cov = model.posterior(prior.variances(model.scale))
    mean, cov = mean[0], cov[0]
    # the flat columns (per-compute effects) have huge variances; only the sources' own
    # columns are drawn, from their conditional block (the marginal of a normal)
    S = len(model.sources)
    l_cols = model.l_cols
    cols = np.concatenate([l_cols[l_cols >= 0], model.g_cols, model.t_cols])
    m = mean[cols]
    c = cov[np.ix_(cols, cols)]
    c = 0.5 * (c + c.T)
    w, v = np.linalg.eigh(c)
    root = v * np.sqrt(np.clip(w, 0.0, None))
    z = np.random.default_rng(seed).standard_normal((draws, cols.size))
    theta = m + z @ root.T
    nl = int(np.sum(l_cols >= 0))
    levels = np.zeros((draws, S))
    levels[:, l_cols >= 0] = theta[:, :nl]
    return PairwiseView(
        study,
        metric,
        model.sources,
        model.u_center,
        model.h_center,
        levels,
        theta[:, nl : nl + S],
        theta[:, nl + S :],
        _common_line(model),
        prior,
        common,
    )


@dataclass(frozen=True)
class Group:
    """One (study, metric) group's seed-averaged points and chance level."""

    study: str
    metric: str
    points: Mapping[str, SourcePoints]
    chance: float = math.nan


def groups_from_observations(observations: Iterable[Observation]) -> list[Group]:
    """The observations as (study, metric) groups of seed-averaged points, without the
    control anneal and mixtures; groups with fewer than two sources of two computes are
    left out."""
    by: dict[tuple[str, str], dict[str, list[RunPoint]]] = {}
    chance: dict[tuple[str, str], list[float]] = {}
    for o in observations:
        if is_control(o.source) or "+" in o.source or not math.isfinite(o.value):
            continue
        key = (o.study, o.metric)
        by.setdefault(key, {}).setdefault(o.source, []).append(
            RunPoint(float(o.compute), float(o.value), o.n_items, o.seed)
        )
        if o.chance is not None:
            chance.setdefault(key, []).append(float(o.chance))
    out = []
    for (study, metric), per in sorted(by.items()):
        noise = group_noise(per)
        points = {s: averaged(p, noise) for s, p in sorted(per.items())}
        points = {s: p for s, p in points.items() if p.x.size >= 2}
        if len(points) < 2:
            continue
        ch = chance.get((study, metric))
        out.append(Group(study, metric, points, float(np.median(ch)) if ch else math.nan))
    return out


def pairwise_views(
    groups: Sequence[Group],
    *,
    common: Mapping[tuple[str, str], Callable[[np.ndarray], np.ndarray]] | None = None,
    draws: int = DRAWS,
    seed: int = 0,
) -> dict[tuple[str, str], PairwiseView]:
    """Each group's :class:`PairwiseView`, under one trend prior estimated over them all.

    Args:
        groups: the groups (see :func:`groups_from_observations`).
        common: per (study, metric), its common level h(x) (see :func:`fits_common_level`);
            groups without one use the straight line.
        draws, seed: the posterior draws.

    Returns:
        (study, metric) → view; groups whose difference model cannot be built are left out.
    """
    models = {}
    nested: list[NestedPairs] = []
    for g in groups:
        m = difference_model(g.points, floor=g.chance)
        if m is None:
            continue
        models[(g.study, g.metric)] = m
        for depth in DEPTHS:
            n = _nested(g.points, m, depth)
            if n is not None:
                nested.append(n)
    prior = estimate_trend_prior(nested)
    return {
        key: draw_view(
            key[0], key[1], m, prior, draws=draws, seed=seed, common=(common or {}).get(key)
        )
        for key, m in models.items()
    }


def fits_common_level(fits: Sequence[LawFit]) -> Callable[[np.ndarray], np.ndarray] | None:
    """The mean of a group's fitted laws (their point predictions) as its common level h(x),
    in the runs' compute; None without a successful fit."""
    ok = [f for f in fits if f.success]
    if not ok:
        return None

    def level(x: np.ndarray) -> np.ndarray:
        from planner.laws.predict import predict

        return np.mean([np.asarray(predict(f, x), dtype=float) for f in ok], axis=0)

    return level


def study_views(
    observations: Iterable[Observation], fits: Iterable[LawFit], *, draws: int = DRAWS
) -> dict[tuple[str, str], PairwiseView]:
    """The difference model's views of every (study, metric) group of ``observations``,
    each with its fitted laws' mean as the common level (see :func:`pairwise_views`).

    Args:
        observations: the runs (of one study, or several: the trend prior pools them).
        fits: the groups' latest fits (those of other groups are ignored).
    """
    by: dict[tuple[str, str], list[LawFit]] = {}
    for f in fits:
        by.setdefault((f.study, f.metric), []).append(f)
    groups = groups_from_observations(observations)
    common = {}
    for g in groups:
        level = fits_common_level(by.get((g.study, g.metric), ()))
        if level is not None:
            common[(g.study, g.metric)] = level
    return pairwise_views(groups, common=common, draws=draws)
