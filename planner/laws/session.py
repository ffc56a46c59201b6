"""Fitting a study's stored runs, as ``annealplan fit`` and the TUI's Laws screen both do.

The one place that turns "fit this (study, metric) with this family and method" into
``group_observations`` → ``fit_joint``/``fit_independent`` → ``store.save_fits``, and the
range over which a fitted law is drawn (its own runs and one decade beyond), shared by every
face that plots laws.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np

from planner.domain import LawFit
from planner.errors import FitError

if TYPE_CHECKING:
    from planner.domain import Observation
    from planner.laws.decision import PairBelief
    from planner.laws.joint import GroupData

#: a law is drawn from its smallest run / BELOW to its largest run × BEYOND: far from its
#: runs a law says little, so one decade of extrapolation is shown and no more
DRAW_BELOW = 1.5
DRAW_BEYOND = 10.0


def describe_fit(fit: LawFit, fmt: Callable[[float], str]) -> tuple[str, str]:
    """(law, parameters) as a fits table shows them; a failed fit has neither (its message
    says why), not the NaN parameters of the first law it tried."""
    if not fit.success:
        return "-", "-"
    return fit.law, ", ".join(f"{k}={fmt(v)}" for k, v in fit.params.items())


def family_candidates(family: str) -> list[Any] | None:
    """The joint-fit candidates of ``family`` (None: ``auto``, the default selection).

    A family with no built-in candidate is passed on by name (a plugin's family), as
    ``fit_joint`` accepts.
    """
    from planner.laws.joint import (
        CANDIDATES_ANY,
        CANDIDATES_BOUNDED,
        CANDIDATES_PERPLEXITY,
        CANDIDATES_RICH,
    )

    if family == "auto":
        return None
    return [
        c
        for c in (*CANDIDATES_ANY, *CANDIDATES_PERPLEXITY, *CANDIDATES_RICH, *CANDIDATES_BOUNDED)
        if c.family == family
    ] or [family]


def fit_store(
    store: Any,
    *,
    study: str | None = None,
    metric: str | None = None,
    family: str = "auto",
    method: str = "joint",
    n_boot: int = 1000,
    jobs: int = 1,
) -> tuple[list[str], list[LawFit]]:
    """Fit laws of each (study, metric) against compute for every source, and save them.

    Args:
        store: an open store (or a cursor of one).
        study: only this study (None: every study).
        metric: only this metric (None: every metric).
        family: a law family, or ``auto`` (chosen by leave-last-out error).
        method: ``joint`` (shape parameters shared across sources) or ``independent``.
        n_boot: bootstrap replicates per fit.
        jobs: worker processes the (study, metric) groups are spread over; 0: one per
            available core. Each group has its own fixed seeds, so the fits do not depend
            on it; the store is written by this process alone, once all are fitted.

    Returns:
        The saved fits' ids and the fits, in the same order.

    Raises:
        FitError: no runs match, or a negative ``jobs``.
    """
    from planner.laws.joint import group_observations
    from planner.laws.workers import map_groups, worker_count

    if jobs < 0:
        raise FitError(f"--jobs must be 0 (one per core) or a positive count, not {jobs}.")

    observations = store.observations(study=study, metric=metric)
    if not observations:
        what = " ".join(f"{k}={v}" for k, v in (("study", study), ("metric", metric)) if v)
        raise FitError(
            f"No runs in the store{' for ' + what if what else ''}: "
            "import some with `annealplan runs import FILE`."
        )
    groups = group_observations(observations, lower_is_better=store.metric_directions())
    fit = partial(_fit_group, family=family, method=method, n_boot=n_boot)
    fits = [f for part in map_groups(fit, groups, worker_count(jobs, len(groups))) for f in part]
    return store.save_fits(fits), fits


def _fit_group(group: GroupData, *, family: str, method: str, n_boot: int) -> list[LawFit]:
    """One group's fits (a worker process's unit of work)."""
    from planner.laws.joint import fit_independent, fit_joint

    if method == "independent":
        return fit_independent(group, family=None if family == "auto" else family, n_boot=n_boot)
    return list(fit_joint(group, candidates=family_candidates(family), n_boot=n_boot).fits)


#: the names a control anneal's runs go by (no source: replay data only)
CONTROL_NAMES = ("", "control")


def group_beliefs(
    fits: Sequence[LawFit],
    observations: Sequence[Observation] = (),
    *,
    at: float | None = None,
) -> tuple[float, list[PairBelief]]:
    """P(a beats b) between the sources of one (study, metric) at one compute.

    The probabilities come from the group's joint bootstrap with the model-averaging
    uncertainty, and are of the values a measurement there would give (with the runs'
    own noise: their evaluation size or seed spread where the runs say it, else each fit's
    residual noise); see :func:`planner.laws.decision.pair_beliefs`.

    Args:
        fits: the group's fits (failed fits and the control anneal are left out).
        observations: the group's runs (for their noise).
        at: where to compare; default: the end of the drawn range, ten times the largest
            fitted compute.

    Returns:
        (the compute compared at, one belief per pair of sources); no beliefs when fewer
        than two sources have fits with bootstrap samples.
    """
    from planner.laws.decision import pair_beliefs
    from planner.laws.noise import RunPoint, group_noise

    usable = [
        f
        for f in fits
        if f.success
        and f.boot is not None
        and len(f.boot)
        and f.source.strip().lower() not in CONTROL_NAMES
    ]
    if len(usable) < 2:
        return float("nan"), []
    where = float(at) if at else max(f.x_max for f in usable) * DRAW_BEYOND
    by_source: dict[str, list[RunPoint]] = {}
    for o in observations:
        by_source.setdefault(o.source, []).append(
            RunPoint(float(o.compute), float(o.value), o.n_items, o.seed)
        )
    noise = group_noise(by_source)
    var = None
    if noise.known:
        from planner.laws.predict import predict

        var = {f.source: float(noise.run_variance(predict(f, [where])[0])) for f in usable}
    return where, pair_beliefs(usable, where, measurement_var=var)


def draw_range(computes: Iterable[float], fallback: float = float("nan")) -> tuple[float, float]:
    """Where a law is drawn: from its smallest run / 1.5 to ten times its largest run.

    Args:
        computes: the computes of the law's own runs (non-positive ones are ignored).
        fallback: the largest fitted compute (``LawFit.x_max``), used when no run is given.

    Returns:
        ``(low, high)``, or NaNs when there is nothing to go by.
    """
    own = [float(c) for c in computes if c > 0]
    if not own:
        if fallback > 0:
            own = [float(fallback)]
        else:
            return float("nan"), float("nan")
    return min(own) / DRAW_BELOW, max(own) * DRAW_BEYOND


def draw_grid(
    computes: Sequence[float], fallback: float = float("nan"), points: int = 60
) -> np.ndarray:
    """A log-spaced grid of ``points`` over :func:`draw_range` (empty when it has none)."""
    low, high = draw_range(computes, fallback)
    if not (low > 0 and high > low):
        return np.empty(0)
    return np.geomspace(low, high, points)


@dataclass(frozen=True)
class ProxyView:
    """An accuracy predicted through its continuous proxy at one compute.

    Attributes:
        metric, proxy: the accuracy and its proxy; compute: where.
        sources: in order; value, low, high: per source, the two-step prediction and its
            90% interval (with the measurement's own noise).
        beliefs: P(a beats b) for every pair, from the same prediction.
    """

    metric: str
    proxy: str
    compute: float
    sources: tuple[str, ...]
    value: np.ndarray
    low: np.ndarray
    high: np.ndarray
    beliefs: tuple[PairBelief, ...]


def proxy_view(
    observations: Sequence[Observation],
    proxy_observations: Sequence[Observation],
    *,
    proxy: str,
    lower_is_better: bool,
    proxy_lower_is_better: bool,
    chance: float | None = None,
    at: float | None = None,
    n_boot: int = 400,
) -> ProxyView | None:
    """The two-step prediction of one (study, metric) through its proxy (see
    :mod:`planner.laws.proxy`), for ``annealplan fit --proxy``.

    Args:
        observations: the accuracy's runs (one study and metric).
        proxy_observations: the proxy's runs of the same study.
        proxy: the proxy's name; lower_is_better, proxy_lower_is_better: the directions.
        chance: the accuracy's chance level (default: its runs' ``chance`` column, else 0).
        at: where to predict (default: ten times the largest run).
        n_boot: bootstrap replicates of both steps.

    Returns:
        None when the two-step prediction cannot be made (the metric is not a share of
        items, too few shared runs, a fit that fails).
    """
    import math

    from scipy import stats

    from planner.laws.decision import PairBelief
    from planner.laws.noise import RunPoint, averaged, group_noise
    from planner.laws.proxy import ProxyInput, proxy_prediction
    from planner.laws.table import GroupInput

    def points(obs: Sequence[Observation]):
        by: dict[str, list[RunPoint]] = {}
        for o in obs:
            if o.source.strip().lower() in CONTROL_NAMES:
                continue
            by.setdefault(o.source, []).append(
                RunPoint(float(o.compute), float(o.value), o.n_items, o.seed)
            )
        noise = group_noise(by)
        return {s: averaged(p, noise) for s, p in sorted(by.items())}, noise

    acc, noise = points(observations)
    prox, _ = points(proxy_observations)
    acc = {s: p for s, p in acc.items() if s in prox and p.x.size >= 3}
    if len(acc) < 2 or not observations:
        return None
    level = chance
    if level is None:
        cells = [o.chance for o in observations if o.chance is not None]
        level = float(np.median(cells)) if cells else math.nan
    first = observations[0]
    group = GroupInput(
        first.study,
        first.metric,
        lower_is_better,
        acc,
        noise,
        level,
        ProxyInput(proxy, proxy_lower_is_better, {s: prox[s] for s in acc}),
    )
    where = float(at) if at else max(float(np.max(p.x)) for p in acc.values()) * DRAW_BEYOND
    g = proxy_prediction(group, acc, where, n_boot=n_boot)
    if g is None:
        return None
    reps = float(np.median(np.concatenate([p.reps for p in acc.values()])))
    var = noise.mean_variance(g.mean, reps) if noise.known else np.zeros(len(acc))
    var = np.nan_to_num(var)
    sd = np.sqrt(np.diag(g.cov) + var)
    z = stats.norm.ppf(0.95)
    low, high = np.clip(g.mean - z * sd, 0.0, 1.0), np.clip(g.mean + z * sd, 0.0, 1.0)
    beliefs = []
    for a, b in itertools.combinations(range(len(g.sources)), 2):
        d, v = g.difference(a, b)
        if lower_is_better:
            d = -d
        p = float(stats.norm.cdf(d / math.sqrt(max(v + var[a] + var[b], 1e-300))))
        beliefs.append(
            PairBelief(g.sources[a], g.sources[b], where, p, float(g.mean[a] - g.mean[b]))
        )
    return ProxyView(first.metric, proxy, where, g.sources, g.mean, low, high, tuple(beliefs))
