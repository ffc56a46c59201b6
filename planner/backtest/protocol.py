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
  pairs ordered correctly / pairs, over all groups (direction-aware); ARE = |pred - actual| /
  |actual| averaged over (group, source) targets, leaving out actual 0;
- interval coverage is the share of targets inside the method's 90% interval.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from planner.domain import Observation
from planner.domain import lower_is_better as direction
from planner.errors import FitError

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
class Target:
    """One (study, metric) group as the backtest sees it."""

    study: str
    metric: str
    lower_is_better: bool
    x_target: float
    x_pe: float
    fit_data: Mapping[str, tuple[np.ndarray, np.ndarray]]
    actual: Mapping[str, float]
    point_estimate: Mapping[str, float]
    left_out: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Prediction:
    """A method's prediction for one source at x_T, with its 90% interval."""

    value: float
    low: float = math.nan
    high: float = math.nan


# A method maps a group to predictions at x_T (missing sources count as failures).
Method = Callable[[Target], Mapping[str, Prediction]]


def build_targets(
    observations: Sequence[Observation],
    fraction: float = DEFAULT_FRACTION,
    *,
    metrics: Sequence[str] | None = None,
    overrides: Mapping[str, bool] | None = None,
) -> list[Target]:
    """Apply the protocol's grouping, targets and fit sets.

    Args:
        observations: the runs table, flattened.
        fraction: F; the fit set is compute <= F·x_T.
        metrics: keep only these metrics (all when None).
        overrides: metric → lower-is-better, winning over the name rule.

    Raises:
        FitError: F outside (0, 1] or a named metric absent.
    """
    if not 0 < fraction <= 1:
        raise FitError(f"--fraction must be in (0, 1], got {fraction}.")
    groups: dict[tuple[str, str], dict[str, list[tuple[float, float]]]] = {}
    for o in observations:
        if metrics and o.metric not in metrics:
            continue
        groups.setdefault((o.study, o.metric), {}).setdefault(o.source, []).append(
            (float(o.compute), float(o.value))
        )
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
        data = {}
        for s, pts in sorted(by_source.items()):
            arr = np.array(sorted(pts), dtype=float)
            data[s] = (arr[:, 0], arr[:, 1])
        x_t = min(float(np.max(x)) for x, _ in data.values())
        fit_data, left = {}, []
        for s, (x, y) in data.items():
            keep = x <= fraction * x_t * (1 + 1e-12)
            if np.unique(x[keep]).size >= MIN_DISTINCT_COMPUTE:
                # the unit the protocol scores is the mean over runs sharing a compute, so
                # the methods fit (and their intervals describe) that mean, not one seed
                fit_data[s] = averaged(x[keep], y[keep])
            else:
                left.append(s)
        if len(fit_data) < 2:
            continue
        x_pe = min(float(np.max(x)) for x, _ in fit_data.values())
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
            )
        )
    return out


@dataclass(frozen=True, slots=True)
class GroupScore:
    study: str
    metric: str
    sources: int
    pairs: int
    correct: int
    pe_correct: int
    are: float
    pe_are: float
    covered: int
    intervals: int
    candidate: str = ""

    def as_dict(self) -> dict:
        return {
            "study": self.study,
            "metric": self.metric,
            "sources": self.sources,
            "pairs": self.pairs,
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
    """Pooled figures plus one GroupScore per group."""

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

    def as_dict(self) -> dict:
        return {
            "fraction": self.fraction,
            "method": self.method,
            "groups": self.groups,
            "pairs": self.pairs,
            "decision_accuracy": _none(self.decision_accuracy),
            "point_estimate_decision_accuracy": _none(self.point_estimate_decision_accuracy),
            "mean_are": _none(self.mean_are),
            "point_estimate_mean_are": _none(self.point_estimate_mean_are),
            "interval_coverage": _none(self.interval_coverage),
            "targets": self.targets,
            "intervals": self.intervals,
            "per_group": [g.as_dict() for g in self.per_group],
        }


def _ordered(pa: float, pb: float, aa: float, ab: float) -> bool:
    """Whether the prediction orders a pair as the actual values do (ties are wrong)."""
    return bool(np.sign(pa - pb) == np.sign(aa - ab)) and pa != pb


def score_target(
    target: Target, preds: Mapping[str, Prediction], candidate: str = ""
) -> GroupScore:
    """Score one group: pairs, correct orderings, ARE and interval coverage."""
    sources = list(target.fit_data)
    pairs = correct = pe_correct = 0
    nan = Prediction(math.nan)
    for a, b in itertools.combinations(sources, 2):
        aa, ab = target.actual[a], target.actual[b]
        if aa == ab:
            continue
        pairs += 1
        pa, pb = preds.get(a, nan).value, preds.get(b, nan).value
        # the direction does not change whether an ordering agrees: both sides flip
        correct += _ordered(pa, pb, aa, ab)
        pe_correct += _ordered(target.point_estimate[a], target.point_estimate[b], aa, ab)
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
        candidate=candidate,
    )


def aggregate(fraction: float, method: str, scores: Sequence[GroupScore]) -> BacktestResult:
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
    )
