"""The backtest protocol: replay a runs table as if only its small runs existed.

Followed exactly, so figures compare with external references:

- group by (study, metric); the target compute x_T is the smallest, over sources, of each
  source's largest compute; the actual value at x_T is that run's value, else linear
  interpolation in log x between the neighbouring runs (runs that share a compute, e.g.
  seeds, are averaged first);
- the fit set is the runs with compute <= F·x_T, averaged per compute like the actual
  values (a method predicts the seed mean the protocol scores); a source with fewer than 3
  distinct compute values in its fit set is left out of that group (a group needs 2 sources
  left);
- the point-estimate baseline ranks sources by their value at x_PE, the smallest over
  sources of the largest compute in each fit set (interpolated as above);
- a pair of sources whose actual values are equal is left out; decision accuracy is POOLED:
  pairs ordered correctly / pairs, over all groups (direction-aware); a pair whose two
  predicted values are equal (a predicted tie) is a coin flip and counts as half a pair
  ordered correctly, for every method and for the point estimate alike; ``ties`` counts
  them; ARE = |pred - actual| / |actual| averaged over (group, source) targets, leaving out
  actual 0;
- interval coverage is the share of targets inside the method's 90% interval;
- a method that states P(a beats b) for its pairs is scored on them by the Brier score,
  the expected calibration error (10 equal-width bins), and the share and accuracy of its
  confident pairs (P >= 0.8 or <= 0.2); the point estimate's own probability is
  Phi(d / sigma_d), its measured difference at x_PE over that difference's noise.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from planner.backtest.calibration import Calibration, calibration
from planner.domain import Observation
from planner.domain import lower_is_better as direction
from planner.errors import FitError
from planner.laws.noise import GroupNoise, RunPoint, SourcePoints, group_noise
from planner.laws.noise import averaged as averaged_points

MIN_DISTINCT_COMPUTE = 3
DEFAULT_FRACTION = 0.1


def averaged(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Average values that share a compute (seeds); sorted by compute."""
    ux, inv = np.unique(x, return_inverse=True)
    sums = np.bincount(inv, weights=y)
    return ux, sums / np.bincount(inv)


def value_at(x: np.ndarray, y: np.ndarray, target: float) -> float:
    """The value at ``target``: the run's value, else linear interpolation in log x.

    Outside the runs' range the nearest run's value is used (the protocol's targets lie
    inside each source's range, except when a source starts above x_T).
    """
    ux, uy = averaged(x, y)
    return float(np.interp(math.log(target), np.log(ux), uy))


@dataclass(frozen=True, slots=True)
class ProxyData:
    """A continuous proxy of a target's metric, seen through the same fit set.

    Attributes:
        metric: the proxy metric's name.
        lower_is_better: its direction.
        fit_points: per source, the proxy's seed-averaged runs with compute <= F·x_T.
    """

    metric: str
    lower_is_better: bool
    fit_points: Mapping[str, SourcePoints]


@dataclass(frozen=True, slots=True)
class Target:
    """One (study, metric) group as the backtest sees it.

    Attributes:
        fit_data: per source, the fit set's (computes, seed-averaged values).
        fit_points: the same points with each mean's noise variance (NaN where unknown).
        noise: what the group's runs say about their noise (evaluation size, seeds).
        chance: the metric's chance level (NaN when not given).
        proxy: the metric's continuous proxy, when one is named.
    """

    study: str
    metric: str
    lower_is_better: bool
    x_target: float
    x_pe: float
    fit_data: Mapping[str, tuple[np.ndarray, np.ndarray]]
    actual: Mapping[str, float]
    point_estimate: Mapping[str, float]
    left_out: tuple[str, ...] = ()
    fit_points: Mapping[str, SourcePoints] = field(default_factory=dict)
    noise: GroupNoise = field(default_factory=GroupNoise)
    chance: float = math.nan
    proxy: ProxyData | None = None

    def pairs(self) -> list[tuple[str, str]]:
        """The group's pairs of sources, in the fit set's order."""
        return list(itertools.combinations(list(self.fit_data), 2))


@dataclass(frozen=True, slots=True)
class Prediction:
    """A method's prediction for one source at x_T, with its 90% interval."""

    value: float
    low: float = math.nan
    high: float = math.nan


@dataclass(frozen=True, slots=True)
class GroupPrediction:
    """A method's predictions for one group.

    Attributes:
        values: per source, the predicted value at x_T (missing sources count as failures).
        law: what predicted it (shown per group).
        p_beats: for pairs (a, b) in :meth:`Target.pairs` order, P(a beats b at x_T),
            direction-aware (a is better); absent when the method states none.
    """

    values: Mapping[str, Prediction]
    law: str = ""
    p_beats: Mapping[tuple[str, str], float] = field(default_factory=dict)


# A method maps a group to its predictions at x_T.
Method = Callable[[Target], GroupPrediction]


def _runs(observations: Sequence[Observation], metrics: Sequence[str] | None):
    groups: dict[tuple[str, str], dict[str, list[RunPoint]]] = {}
    chance: dict[tuple[str, str], list[float]] = {}
    for o in observations:
        if metrics and o.metric not in metrics:
            continue
        groups.setdefault((o.study, o.metric), {}).setdefault(o.source, []).append(
            RunPoint(float(o.compute), float(o.value), o.n_items, o.seed)
        )
        if o.chance is not None:
            chance.setdefault((o.study, o.metric), []).append(float(o.chance))
    return groups, chance


def build_targets(
    observations: Sequence[Observation],
    fraction: float = DEFAULT_FRACTION,
    *,
    metrics: Sequence[str] | None = None,
    overrides: Mapping[str, bool] | None = None,
    proxies: Mapping[str, str] | None = None,
    chance: Mapping[str, float] | None = None,
) -> list[Target]:
    """Apply the protocol's grouping, targets and fit sets.

    Args:
        observations: the runs table, flattened.
        fraction: F; the fit set is compute <= F·x_T.
        metrics: keep only these metrics (all when None).
        overrides: metric → lower-is-better, winning over the name rule.
        proxies: metric → its proxy metric (resolved names, see
            :func:`planner.laws.proxy.resolve_proxies`); the proxy's runs of the same study
            and sources, up to the same F·x_T, come with the target.
        chance: metric → chance level, winning over a ``chance`` column.

    Raises:
        FitError: F outside (0, 1] or a named metric absent.
    """
    if not 0 < fraction <= 1:
        raise FitError(f"--fraction must be in (0, 1], got {fraction}.")
    wanted = None
    if metrics:
        wanted = list(metrics) + [p for m, p in (proxies or {}).items() if m in metrics]
    groups, chance_cells = _runs(observations, wanted)
    if metrics:
        seen = {m for _, m in groups}
        missing = [m for m in metrics if m not in seen]
        if missing:
            known = sorted({o.metric for o in observations})
            raise FitError(
                f"No runs for metric {missing[0]!r}; the table has: {', '.join(known[:20])}."
            )
    out = []
    for (study, metric), by_source in sorted(groups.items()):
        if metrics and metric not in metrics:
            continue  # a proxy's runs, read for the metric it stands for
        data = {}
        for s, pts in sorted(by_source.items()):
            arr = np.array(sorted((p.compute, p.value) for p in pts), dtype=float)
            data[s] = (arr[:, 0], arr[:, 1])
        x_t = min(float(np.max(x)) for x, _ in data.values())
        limit = fraction * x_t * (1 + 1e-12)
        kept = {s: [p for p in pts if p.compute <= limit] for s, pts in by_source.items()}
        noise = group_noise(kept)
        fit_points, left = {}, []
        for s in data:
            if len({p.compute for p in kept[s]}) >= MIN_DISTINCT_COMPUTE:
                # the unit the protocol scores is the mean over runs sharing a compute, so
                # the methods fit (and their intervals describe) that mean, not one seed
                fit_points[s] = averaged_points(kept[s], noise)
            else:
                left.append(s)
        if len(fit_points) < 2:
            continue
        fit_data = {s: (p.x, p.y) for s, p in fit_points.items()}
        x_pe = min(float(np.max(x)) for x, _ in fit_data.values())
        level = math.nan
        if chance and metric in chance:
            level = float(chance[metric])
        elif (study, metric) in chance_cells:
            level = float(np.median(chance_cells[(study, metric)]))
        proxy = None
        if proxies and metric in proxies:
            proxy = _proxy_data(groups, study, proxies[metric], fit_points, limit, overrides)
        out.append(
            Target(
                study=study,
                metric=metric,
                lower_is_better=direction(metric, overrides),
                x_target=x_t,
                x_pe=x_pe,
                fit_data=fit_data,
                actual={s: value_at(*data[s], x_t) for s in fit_data},
                point_estimate={s: value_at(*fit_data[s], x_pe) for s in fit_data},
                left_out=tuple(left),
                fit_points=fit_points,
                noise=noise,
                chance=level,
                proxy=proxy,
            )
        )
    return out


def _proxy_data(
    groups: Mapping[tuple[str, str], Mapping[str, Sequence[RunPoint]]],
    study: str,
    metric: str,
    fit_points: Mapping[str, SourcePoints],
    limit: float,
    overrides: Mapping[str, bool] | None,
) -> ProxyData | None:
    """The proxy's fit set for a target's sources (None when a source has no such runs)."""
    by_source = groups.get((study, metric))
    if not by_source:
        return None
    kept = {s: [p for p in by_source.get(s, ()) if p.compute <= limit] for s in fit_points}
    if any(len({p.compute for p in pts}) < MIN_DISTINCT_COMPUTE for pts in kept.values()):
        return None
    noise = group_noise(kept)
    return ProxyData(
        metric=metric,
        lower_is_better=direction(metric, overrides),
        fit_points={s: averaged_points(pts, noise) for s, pts in kept.items()},
    )


@dataclass(frozen=True, slots=True)
class GroupScore:
    """One group's scores.

    ``correct`` counts a predicted tie as half a pair (so does ``pe_correct``); ``probs``
    and ``outcomes`` are the method's P(a beats b) and whether a did, per pair it stated
    one; ``pe_probs`` the point estimate's Phi(d / sigma_d) for the same pairs.
    """

    study: str
    metric: str
    sources: int
    pairs: int
    correct: float
    pe_correct: float
    are: float
    pe_are: float
    covered: int
    intervals: int
    candidate: str = ""
    ties: int = 0
    pe_ties: int = 0
    probs: tuple[float, ...] = ()
    outcomes: tuple[int, ...] = ()
    pe_probs: tuple[float, ...] = ()
    pe_outcomes: tuple[int, ...] = ()

    def as_dict(self) -> dict:
        return {
            "study": self.study,
            "metric": self.metric,
            "sources": self.sources,
            "pairs": self.pairs,
            "ties": self.ties,
            "point_estimate_ties": self.pe_ties,
            "decision_accuracy": self.correct / self.pairs if self.pairs else None,
            "point_estimate_decision_accuracy": self.pe_correct / self.pairs
            if self.pairs
            else None,
            "mean_are": _none(self.are),
            "point_estimate_mean_are": _none(self.pe_are),
            "interval_coverage": self.covered / self.intervals if self.intervals else None,
            "law": self.candidate,
        }


def _none(v: float) -> float | None:
    return None if not math.isfinite(v) else v


@dataclass(frozen=True, slots=True)
class BacktestResult:
    """Pooled figures plus one GroupScore per group.

    Attributes:
        ties, point_estimate_ties: pairs whose two predicted values were equal (each
            counted as half a pair ordered correctly).
        calibration: the method's P(a beats b) scored against the outcomes (pairs 0 when
            the method states none); point_estimate_calibration the same for the point
            estimate's Phi(d / sigma_d).
        notes: what the method chose for the table (its trend prior, its weights…).
    """

    fraction: float
    method: str
    groups: int
    pairs: int
    decision_accuracy: float
    point_estimate_decision_accuracy: float
    mean_are: float
    point_estimate_mean_are: float
    interval_coverage: float
    targets: int
    intervals: int
    per_group: tuple[GroupScore, ...] = field(default=())
    ties: int = 0
    point_estimate_ties: int = 0
    calibration: Calibration = field(
        default_factory=lambda: Calibration(0, math.nan, math.nan, math.nan, math.nan)
    )
    point_estimate_calibration: Calibration = field(
        default_factory=lambda: Calibration(0, math.nan, math.nan, math.nan, math.nan)
    )
    notes: Mapping[str, object] = field(default_factory=dict)

    def as_dict(self) -> dict:
        c, pc = self.calibration, self.point_estimate_calibration
        return {
            "fraction": self.fraction,
            "method": self.method,
            "groups": self.groups,
            "pairs": self.pairs,
            "ties": self.ties,
            "point_estimate_ties": self.point_estimate_ties,
            "decision_accuracy": _none(self.decision_accuracy),
            "point_estimate_decision_accuracy": _none(self.point_estimate_decision_accuracy),
            "mean_are": _none(self.mean_are),
            "point_estimate_mean_are": _none(self.point_estimate_mean_are),
            "interval_coverage": _none(self.interval_coverage),
            "brier": _none(c.brier),
            "calibration_error": _none(c.calibration_error),
            "confident_share": _none(c.confident_share),
            "confident_accuracy": _none(c.confident_accuracy),
            "point_estimate_brier": _none(pc.brier),
            "point_estimate_calibration_error": _none(pc.calibration_error),
            "point_estimate_confident_share": _none(pc.confident_share),
            "point_estimate_confident_accuracy": _none(pc.confident_accuracy),
            "targets": self.targets,
            "intervals": self.intervals,
            "notes": dict(self.notes),
            "per_group": [g.as_dict() for g in self.per_group],
        }


def _credit(pa: float, pb: float, aa: float, ab: float) -> tuple[float, bool]:
    """(credit, tied): 1 when the prediction orders a pair as the actual values do, 0 when
    it orders it the other way or predicts nothing, 1/2 for a predicted tie (a coin flip).

    The direction does not change whether an ordering agrees: both sides flip.
    """
    if not (math.isfinite(pa) and math.isfinite(pb)):
        return 0.0, False
    if pa == pb:
        return 0.5, True
    return float(np.sign(pa - pb) == np.sign(aa - ab)), False


def point_estimate_probability(target: Target, a: str, b: str) -> float:
    """The noise-aware point estimate's P(a beats b): Phi(d / sigma_d) at x_PE.

    d is a minus b at x_PE (direction-aware) and sigma_d the noise of that measured
    difference: each point's variance where the runs give it (evaluation size, seeds),
    else the scatter of the group's differences around a line in log-compute (their
    residual variance, pooled over the pairs). NaN when neither is available.
    """
    va = _var_at(target, a)
    vb = _var_at(target, b)
    d = target.point_estimate[a] - target.point_estimate[b]
    if target.lower_is_better:
        d = -d
    var = va + vb
    if not (math.isfinite(var) and var > 0):
        var = 2.0 * _residual_var(target)
    if not (math.isfinite(var) and var > 0):
        return math.nan
    return float(stats.norm.cdf(d / math.sqrt(var)))


def _var_at(target: Target, source: str) -> float:
    p = target.fit_points.get(source)
    if p is None or p.x.size == 0:
        return math.nan
    return float(np.interp(math.log(target.x_pe), np.log(p.x), p.var))


def _residual_var(target: Target) -> float:
    """A point's noise from the scatter of pair differences around lines in log-compute."""
    ss, dof = 0.0, 0
    for a, b in target.pairs():
        xa, ya = target.fit_data[a]
        xb, yb = target.fit_data[b]
        common, ia, ib = np.intersect1d(xa, xb, return_indices=True)
        if common.size < 3:
            continue
        d = ya[ia] - yb[ib]
        u = np.log(common)
        coef = np.polyfit(u, d, 1)
        ss += (
            float(np.sum((d - np.polyval(coef, u)) ** 2)) / 2.0
        )  # a difference has 2 points' noise
        dof += common.size - 2
    return ss / dof if dof else math.nan


def score_target(
    target: Target, prediction: GroupPrediction | Mapping[str, Prediction], candidate: str = ""
) -> GroupScore:
    """Score one group: pairs, correct orderings (ties half), ARE, coverage, probabilities."""
    if not isinstance(prediction, GroupPrediction):
        prediction = GroupPrediction(dict(prediction), candidate)
    preds = prediction.values
    sources = list(target.fit_data)
    pairs = ties = pe_ties = 0
    correct = pe_correct = 0.0
    probs, outcomes, pe_probs, pe_outcomes = [], [], [], []
    nan = Prediction(math.nan)
    for a, b in target.pairs():
        aa, ab = target.actual[a], target.actual[b]
        if aa == ab:
            continue
        pairs += 1
        credit, tied = _credit(preds.get(a, nan).value, preds.get(b, nan).value, aa, ab)
        correct += credit
        ties += tied
        credit, tied = _credit(target.point_estimate[a], target.point_estimate[b], aa, ab)
        pe_correct += credit
        pe_ties += tied
        a_won = int((aa < ab) if target.lower_is_better else (aa > ab))
        p = prediction.p_beats.get((a, b), math.nan)
        if math.isfinite(p):
            probs.append(float(p))
            outcomes.append(a_won)
        q = point_estimate_probability(target, a, b)
        if math.isfinite(q):
            pe_probs.append(q)
            pe_outcomes.append(a_won)
    ares, pe_ares = [], []
    covered = intervals = 0
    for s in sources:
        act = target.actual[s]
        p = preds.get(s, nan)
        if act != 0:
            ares.append(abs(p.value - act) / abs(act) if math.isfinite(p.value) else math.inf)
            pe_ares.append(abs(target.point_estimate[s] - act) / abs(act))
        intervals += 1
        covered += bool(math.isfinite(p.low) and math.isfinite(p.high) and p.low <= act <= p.high)
    return GroupScore(
        study=target.study,
        metric=target.metric,
        sources=len(sources),
        pairs=pairs,
        correct=correct,
        pe_correct=pe_correct,
        are=float(np.mean(ares)) if ares else math.nan,
        pe_are=float(np.mean(pe_ares)) if pe_ares else math.nan,
        covered=covered,
        intervals=intervals,
        candidate=prediction.law or candidate,
        ties=ties,
        pe_ties=pe_ties,
        probs=tuple(probs),
        outcomes=tuple(outcomes),
        pe_probs=tuple(pe_probs),
        pe_outcomes=tuple(pe_outcomes),
    )


def aggregate(
    fraction: float,
    method: str,
    scores: Sequence[GroupScore],
    notes: Mapping[str, object] | None = None,
) -> BacktestResult:
    """Pool group scores: accuracy over all pairs; ARE and coverage over all targets."""
    pairs = sum(g.pairs for g in scores)
    targets = sum(g.sources for g in scores)

    def weighted(attr: str) -> float:
        num = sum(getattr(g, attr) * g.sources for g in scores if math.isfinite(getattr(g, attr)))
        den = sum(g.sources for g in scores if math.isfinite(getattr(g, attr)))
        return num / den if den else math.nan

    intervals = sum(g.intervals for g in scores)
    return BacktestResult(
        fraction=fraction,
        method=method,
        groups=len(scores),
        pairs=pairs,
        decision_accuracy=sum(g.correct for g in scores) / pairs if pairs else math.nan,
        point_estimate_decision_accuracy=sum(g.pe_correct for g in scores) / pairs
        if pairs
        else math.nan,
        mean_are=weighted("are"),
        point_estimate_mean_are=weighted("pe_are"),
        interval_coverage=sum(g.covered for g in scores) / intervals if intervals else math.nan,
        targets=targets,
        intervals=intervals,
        per_group=tuple(scores),
        ties=sum(g.ties for g in scores),
        point_estimate_ties=sum(g.pe_ties for g in scores),
        calibration=calibration(
            [p for g in scores for p in g.probs], [o for g in scores for o in g.outcomes]
        ),
        point_estimate_calibration=calibration(
            [p for g in scores for p in g.pe_probs], [o for g in scores for o in g.pe_outcomes]
        ),
        notes=dict(notes or {}),
    )
