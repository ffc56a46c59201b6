"""Decide on differences: a model of how sources differ across the compute ladder.

A decision between two sources depends only on the difference of their values at the
target. What every source shares at a compute (the model's size and schedule, the
evaluation's items, the common curve of the metric) cancels in it; an extrapolation of each
source on its own adds independent errors instead. This module models the differences
directly. Each run's value is

    y_sk = c_k + l_s + g_s·(h_k − h̄) + t_s·(u_k − ū) + noise,    u = log(compute),

with a free effect c_k per compute (what all sources share there; h_k is the common level
it implies), a level l_s per source, a trend g_s along the common level (a source that
gains more than the others for every unit the metric moves: differences that grow as a
metric rises above chance, or shrink as a loss nears its floor) and a trend t_s in
log-compute. The levels are estimated from every fit point, each weighed by its noise (so
the largest computes count as much as their noise allows, not alone); both trends are
shrunk toward zero by normal priors. With no trend the prediction of a difference is the
noise-weighted mean of its measured values: the point estimate, denoised. A trend is kept
only as far as the priors let it.

Where the metric has a floor all sources share (an accuracy's chance level) the common
level is measured from it and the sources' levels there are held at zero: at chance no
source is better, so a difference can only grow with the common progress above it.

The priors are not constants of the code. They are set per table by empirical Bayes
(:func:`estimate_trend_prior`): each group's fit set is backtested inside itself — each
source's largest fit compute (and, further, its two largest) held out and extrapolated
from the rest — and the priors are those under which the outcomes of those held-out pairs
(which source won) are most probable, pooled over every group and pair of the table. They
are in each group's own units: g_s ~ N(0, k_level²) (a share of the common movement) and
t_s ~ N(0, (k_log·σ/U)²) (σ a point's noise and U the fit set's span of log-compute: a
trend the noise alone could show); (k_level, k_log) is what the table estimates.

Everything here is a linear-Gaussian model, solved in closed form, batched over priors.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from planner.laws.noise import SourcePoints

#: prior variance of the free effects (per compute and per source level), in units of the
#: group's squared spread: wide enough to be flat, finite so that an effect no point
#: informs stays defined (with a huge variance)
FLAT = 1e6
#: where a metric has a floor every source shares (an accuracy's chance level), the sources'
#: difference there is held at zero: its prior variance is this share of the flat one
ANCHOR = 1e-12
#: the grid the table's priors and excess variances are chosen on: none, and 0.01 to 10
PRIOR_GRID = np.concatenate([[0.0], np.geomspace(0.01, 10.0, 19)])


@dataclass(frozen=True, slots=True)
class TrendScale:
    """A group's own units for trends (see the module's docstring).

    Attributes:
        slope: |b|, the common slope of the metric per unit of log-compute.
        noise: σ/U, a point's noise standard deviation over the log-compute span.
    """

    slope: float
    noise: float

    @property
    def total(self) -> float:
        """b² + (σ/U)²: both units at once."""
        return self.slope**2 + self.noise**2

    def variance(self, k: tuple[float, float] | np.ndarray) -> np.ndarray:
        """k_b²·b² + k_n²·(σ/U)² for one pair k or an array of pairs (..., 2)."""
        k = np.asarray(k, dtype=float)
        return (k[..., 0] * self.slope) ** 2 + (k[..., 1] * self.noise) ** 2


@dataclass(frozen=True, slots=True)
class Gaussian:
    """Predicted values (or deviations) of a group's sources: a mean and a covariance."""

    sources: tuple[str, ...]
    mean: np.ndarray  # (S,)
    cov: np.ndarray  # (S, S)

    def difference(self, a: int, b: int) -> tuple[float, float]:
        """Mean and variance of source a minus source b."""
        m = float(self.mean[a] - self.mean[b])
        v = float(self.cov[a, a] + self.cov[b, b] - 2.0 * self.cov[a, b])
        return m, max(v, 0.0)


@dataclass(frozen=True)
class DifferenceModel:
    """The difference model of one group's points, ready to be solved under any prior.

    Attributes:
        sources: source names, in order.
        X: design matrix (n, P): columns c_1..c_K, l_2..l_S, g_1..g_S, t_1..t_S.
        y: values (n,).
        var: each point's noise variance (n,).
        g_cols: the columns of each source's trend along the common level.
        t_cols: the columns of each source's trend in log-compute.
        l_cols: the level column of each source (-1 for the first, whose level is 0).
        u_center: ū, the mean log-compute of the points.
        h_center: h̄, the mean common level of the points.
        scale: the group's trend units.
        noise_var: a typical point's noise variance (the median).
        flat_var: the flat prior's variance.
        dispersion: the residual variance over the known noise (1 when not known or less).
        noise_known: whether the points' variances came from the evaluation size or seeds.
    """

    sources: tuple[str, ...]
    X: np.ndarray
    y: np.ndarray
    var: np.ndarray
    g_cols: np.ndarray
    t_cols: np.ndarray
    l_cols: np.ndarray
    u_center: float
    h_center: float
    scale: TrendScale
    noise_var: float
    flat_var: float
    dispersion: float = 1.0
    noise_known: bool = False
    anchored: bool = False

    def posterior(self, prior: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean (T, P) and covariance (T, P, P) for T priors.

        Args:
            prior: (T, 2) prior variances of the trends: along the common level, and in
                log-compute.
        """
        prior = np.maximum(np.atleast_2d(np.asarray(prior, dtype=float)), 1e-300)
        w = 1.0 / self.var
        XtW = self.X.T * w
        A0 = XtW @ self.X
        b = XtW @ self.y
        P = A0.shape[0]
        precision = np.full((prior.shape[0], P), 1.0 / self.flat_var)
        if self.anchored:  # no difference at the floor: the levels are held at zero
            precision[:, self.l_cols[self.l_cols >= 0]] = 1.0 / (ANCHOR * self.flat_var)
        precision[:, self.g_cols] = 1.0 / prior[:, 0:1]
        precision[:, self.t_cols] = 1.0 / prior[:, 1:2]
        A = A0[None, :, :] + precision[:, :, None] * np.eye(P)[None, :, :]
        cov = np.linalg.inv(A)
        mean = cov @ b
        return mean, cov

    def deviations(
        self, compute: float, level: float, level_var: float, prior: np.ndarray
    ) -> list[Gaussian]:
        """Each source's deviation l_s + g_s·(h − h̄) + t_s·(u − ū) at ``compute``, where
        the common level h is ``level`` (with variance ``level_var``), per prior.

        Differences of deviations are differences of values: what all sources share
        cancels. Their levels are relative to the first source.
        """
        S = len(self.sources)
        L = np.zeros((S, self.X.shape[1]))
        G = np.zeros((S, self.X.shape[1]))
        dh = level - self.h_center
        for s in range(S):
            if self.l_cols[s] >= 0:
                L[s, self.l_cols[s]] = 1.0
            L[s, self.g_cols[s]] = dh
            L[s, self.t_cols[s]] = math.log(compute) - self.u_center
            G[s, self.g_cols[s]] = 1.0
        mean, cov = self.posterior(prior)
        m = mean @ L.T  # (T, S)
        c = L[None] @ cov @ L.T[None]  # (T, S, S)
        if level_var > 0:
            # the common level at the target is itself uncertain: g_s·h has the extra
            # variance var(h)·E[g gᵀ]
            gm = mean @ G.T  # (T, S)
            gc = G[None] @ cov @ G.T[None]
            c = c + level_var * (gm[:, :, None] * gm[:, None, :] + gc)
        return [Gaussian(self.sources, m[i], c[i]) for i in range(m.shape[0])]


def _log_x_keys(x: np.ndarray) -> np.ndarray:
    """Computes as keys that match across sources (equal to 9 digits in log-compute)."""
    return np.round(np.log(x), 9)


def trend_scale(points: Mapping[str, SourcePoints], noise_var: float) -> TrendScale:
    """The group's common slope (within-source, pooled) and noise over its log span."""
    num = den = 0.0
    us = []
    for p in points.values():
        u = np.log(p.x)
        us.append(u)
        if u.size > 1:
            du = u - u.mean()
            num += float(np.sum(du * (p.y - p.y.mean())))
            den += float(np.sum(du * du))
    u_all = np.concatenate(us) if us else np.empty(0)
    span = float(np.ptp(u_all)) if u_all.size else 0.0
    slope = abs(num / den) if den > 0 else 0.0
    noise = math.sqrt(noise_var) / span if span > 0 and noise_var > 0 else 0.0
    return TrendScale(slope, noise)


def difference_model(
    points: Mapping[str, SourcePoints],
    *,
    noise_var: float | None = None,
    dispersion: float | None = None,
    floor: float = math.nan,
) -> DifferenceModel | None:
    """Build the difference model of a group's points.

    With a ``floor`` (an accuracy's chance level, where every source is equal) the trend
    along the common level is measured from the floor and the sources' levels there are
    held at zero: a difference between sources grows with their common progress above
    chance, and vanishes where there is none.

    The common level h_k at each compute is the fit of y = c_k + l_s without trends (the
    per-compute effect plus the mean source level), so sources missing at a compute do not
    shift it. The points' noise: where every point's variance is known (evaluation size,
    seeds) it is used, times a dispersion (the residual variance of the model with free
    log-compute trends over the known noise, at least 1: retraining adds noise an
    evaluation's size does not show); where it is not, one variance for all points is
    estimated from those residuals (or, with no residual degrees of freedom, from the model
    without trends).

    Args:
        points: per source, its seed-averaged points.
        noise_var: use this variance for points of unknown noise instead of estimating
            it (a nested fit passes the full fit set's estimate: fewer points estimate it
            worse, and the noise is the measurement's, not the extrapolation's).
        dispersion: likewise for the dispersion of known noise.

    Returns:
        The model, or None when the points cannot support it (fewer than two sources, or
        no way to tell the noise).
    """
    sources = tuple(points)
    if len(sources) < 2:
        return None
    keys = np.unique(np.concatenate([_log_x_keys(points[s].x) for s in sources]))
    K, S = keys.size, len(sources)
    P = K + (S - 1) + 2 * S
    l_cols = np.array([-1] + [K + s - 1 for s in range(1, S)])
    g_cols = np.arange(K + S - 1, K + 2 * S - 1)
    t_cols = np.arange(K + 2 * S - 1, P)
    u_all = np.concatenate([np.log(points[s].x) for s in sources])
    u_center = float(np.mean(u_all))
    k_idx, src, ys, vs, us = [], [], [], [], []
    for s, name in enumerate(sources):
        p = points[name]
        k_idx.append(np.searchsorted(keys, _log_x_keys(p.x)))
        src.append(np.full(p.x.size, s))
        ys.append(p.y)
        vs.append(p.var)
        us.append(np.log(p.x))
    k_idx, src, y, v, u = map(np.concatenate, (k_idx, src, ys, vs, us))
    n = y.size
    X = np.zeros((n, P))
    X[np.arange(n), k_idx] = 1.0
    for i in range(n):
        if l_cols[src[i]] >= 0:
            X[i, l_cols[src[i]]] = 1.0
        X[i, t_cols[src[i]]] = u[i] - u_center
    spread = float(np.std(y)) or max(abs(float(np.mean(y))), 1.0)
    flat = FLAT * spread**2
    known = bool(np.all(np.isfinite(v)) and np.all(v > 0))

    def fit_cols(cols: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, float, int]:
        Xc = X[:, cols]
        sw = np.sqrt(weights)
        coef, *_ = np.linalg.lstsq(Xc * sw[:, None], y * sw, rcond=None)
        rank = int(np.linalg.matrix_rank(Xc))
        r = (y - Xc @ coef) * sw
        return coef, float(np.sum(r * r)), n - rank

    log_trend = np.concatenate([np.arange(K + S - 1), t_cols])
    no_trend = np.arange(K + S - 1)
    disp = 1.0
    if known:
        if dispersion is not None:
            disp = max(float(dispersion), 1.0)
        else:
            _, ss, dof = fit_cols(log_trend, 1.0 / v)
            disp = max(ss / dof, 1.0) if dof > 0 else 1.0
        var = v * disp
    else:
        if noise_var is not None and math.isfinite(noise_var) and noise_var > 0:
            sigma2 = float(noise_var)
        else:
            _, ss, dof = fit_cols(log_trend, np.ones(n))
            if dof <= 0:
                _, ss, dof = fit_cols(no_trend, np.ones(n))
            if dof <= 0 or not ss > 0:
                return None
            sigma2 = ss / dof
        var = np.full(n, sigma2)
    # the common level at each compute: c_k plus the mean source level (l_1 = 0)
    coef, _, _ = fit_cols(no_trend, 1.0 / var)
    levels = coef[:K] + np.sum(coef[K:]) / S
    h = levels[k_idx]
    anchored = math.isfinite(floor)
    h_center = float(floor) if anchored else float(np.mean(h))
    for i in range(n):
        X[i, g_cols[src[i]]] = h[i] - h_center
    typical = float(np.median(var))
    return DifferenceModel(
        sources=sources,
        X=X,
        y=y,
        var=var,
        g_cols=g_cols,
        t_cols=t_cols,
        l_cols=l_cols,
        u_center=u_center,
        h_center=h_center,
        scale=trend_scale(points, typical),
        noise_var=typical,
        flat_var=flat,
        dispersion=disp,
        noise_known=known,
        anchored=anchored,
    )


def hold_out_largest(
    points: Mapping[str, SourcePoints], depth: int = 1
) -> tuple[dict[str, SourcePoints], dict[str, tuple[float, float, float]]]:
    """Each source's ``depth`` largest computes held out.

    Returns:
        (the rest, {source: (x, y, var) of its largest compute}): the held-out point
        furthest from the rest, ``depth`` steps of the source's ladder beyond it.
    """
    rest, held = {}, {}
    for name, p in points.items():
        ux = np.unique(p.x)
        cut = ux[-depth] if ux.size >= depth else -np.inf
        keep = p.x < cut
        rest[name] = SourcePoints(p.x[keep], p.y[keep], p.var[keep], p.reps[keep], p.n_items)
        i = int(np.argmax(p.x))
        held[name] = (float(p.x[i]), float(p.y[i]), float(p.var[i]))
    return rest, held


def shared_holdout(
    held: Mapping[str, tuple[float, float, float]], sources: Sequence[str]
) -> tuple[float, list[int]] | None:
    """The held-out compute most sources share (ties: the largest) and the indices in
    ``sources`` of those held out there; None when fewer than two share one (no pair to
    score)."""
    keys = [round(math.log(held[s][0]), 9) for s in sources]
    counts: dict[float, int] = {}
    for k in keys:
        counts[k] = counts.get(k, 0) + 1
    key = max(counts, key=lambda k: (counts[k], k))
    if counts[key] < 2:
        return None
    idx = [i for i, k in enumerate(keys) if k == key]
    return held[sources[idx[0]]][0], idx


def reduced_model(
    points: Mapping[str, SourcePoints], full: DifferenceModel, depth: int = 1
) -> DifferenceModel | None:
    """The difference model of the fit set without each source's ``depth`` largest
    computes, with the full fit set's noise (the measurement's, which fewer points estimate
    worse) and floor. None when a source has fewer than two points left."""
    rest, _ = hold_out_largest(points, depth)
    if any(p.x.size < 2 for p in rest.values()):
        return None
    return difference_model(
        rest,
        noise_var=full.noise_var,
        dispersion=full.dispersion,
        floor=full.h_center if full.anchored else math.nan,
    )


@dataclass(frozen=True)
class NestedPairs:
    """A group's nested backtest for the difference model: the reduced fit set's model
    (:func:`reduced_model`) and the held-out differences it is scored on.

    Attributes:
        model: the difference model of the reduced fit set.
        compute: the held-out compute (shared by the pairs below).
        level, level_var: the common level predicted there (from the reduced fit set) and
            its variance.
        pairs: (a, b) source indices whose held-out points share that compute.
        observed: each pair's held-out difference y_a − y_b.
        noise: each observed difference's noise variance.
    """

    model: DifferenceModel
    compute: float
    level: float
    level_var: float
    pairs: tuple[tuple[int, int], ...]
    observed: np.ndarray
    noise: np.ndarray


def outcome_log_score(mean: np.ndarray, var: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """Log probability of each held-out pair's outcome (which side won) under normal
    predictions of its difference: log Φ(±mean/sd). A pair observed tied scores 0.

    A decision needs the sign of a difference, not its size: scored this way every pair
    counts alike, whatever its metric's scale or noise (a density of the differences
    themselves is dominated by the metrics with the least noise).
    """
    z = mean / np.sqrt(np.maximum(var, 1e-300))
    sign = np.sign(observed)
    return np.where(sign == 0, 0.0, stats.norm.logcdf(sign * z))


def pair_log_score(nested: NestedPairs, prior: np.ndarray) -> np.ndarray:
    """Log score of the held-out outcomes under each prior (T, 2): shape (T, pairs)."""
    devs = nested.model.deviations(nested.compute, nested.level, nested.level_var, prior)
    mean = np.empty((len(devs), len(nested.pairs)))
    var = np.empty_like(mean)
    for t, g in enumerate(devs):
        for j, (a, b) in enumerate(nested.pairs):
            mean[t, j], var[t, j] = g.difference(a, b)
    return outcome_log_score(mean, var + nested.noise[None, :], nested.observed[None, :])


@dataclass(frozen=True, slots=True)
class TrendPrior:
    """The table's trend prior, in each group's own units.

    A source's trend along the common level has prior standard deviation ``k_level`` (a
    share: a source that gains 10% more than the others per unit the metric moves has
    g = 0.1); its trend in log-compute has ``k_log``·σ/U (σ a point's noise, U the fit
    set's span of log-compute: the trend noise alone could show).

    Attributes:
        k_level, k_log: what the table chose.
        pairs: held-out pairs it was estimated on.
        groups: groups those came from.
        log_score: their outcomes' mean log score under the chosen prior.
        no_trend_log_score: the same with no trend.
    """

    k_level: float
    k_log: float
    pairs: int = 0
    groups: int = 0
    log_score: float = math.nan
    no_trend_log_score: float = math.nan

    def variances(self, scale: TrendScale) -> np.ndarray:
        """The prior variances (level trend, log-compute trend) of a group, shape (1, 2)."""
        return np.array([[self.k_level**2, (self.k_log * scale.noise) ** 2]])


def _grid_variances(scale: TrendScale) -> tuple[np.ndarray, np.ndarray]:
    kl, ku = np.meshgrid(PRIOR_GRID, PRIOR_GRID, indexing="ij")
    grid = np.stack([kl.ravel(), ku.ravel()], axis=-1)  # (G, 2)
    return grid, np.stack([grid[:, 0] ** 2, (grid[:, 1] * scale.noise) ** 2], axis=-1)


def estimate_trend_prior(nested: Sequence[NestedPairs]) -> TrendPrior:
    """Empirical Bayes over a table: the (k_level, k_log) under which the outcomes of the
    held-out pairs of every group's nested backtest are most probable (their log score,
    :func:`outcome_log_score`; grid :data:`PRIOR_GRID` squared).

    With no held-out pair the prior is zero: no trend is kept where nothing shows that
    trends persist.
    """
    cases = [c for c in nested if c is not None and c.pairs]
    if not cases:
        return TrendPrior(0.0, 0.0)
    total = None
    grid = None
    n = 0
    for c in cases:
        grid, variances = _grid_variances(c.model.scale)
        dens = pair_log_score(c, variances).sum(axis=1)
        total = dens if total is None else total + dens
        n += len(c.pairs)
    # ties (a flat table) go to the smallest prior: the grid starts at zero
    best = int(np.argmax(total))
    return TrendPrior(
        k_level=float(grid[best, 0]),
        k_log=float(grid[best, 1]),
        pairs=n,
        groups=len(cases),
        log_score=float(total[best] / n),
        no_trend_log_score=float(total[0] / n),
    )
