"""Prediction methods the backtest can replay, selectable by name.

Most methods predict each group on its own (:data:`Method`). A :class:`TableMethod` first
backtests every group's fit set inside itself, chooses for the whole table (a trend prior,
excess variances, the candidates' weights; see :mod:`planner.laws.table`), then predicts
each group with those choices.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from planner.backtest.protocol import GroupPrediction, Prediction, Target
from planner.errors import FitError, did_you_mean
from planner.laws.joint import GroupData, fit_independent, fit_joint
from planner.laws.predict import DEFAULT_LEVEL, predict_interval
from planner.laws.proxy import ProxyInput
from planner.laws.table import Evidence, GroupInput, TableModel

# Replicates per group in the backtest; enough for stable 5%/95% quantiles.
BACKTEST_BOOTSTRAP = 400


def _from_fits(fits, target: Target, *, beliefs: bool = False) -> GroupPrediction:
    x_target = target.x_target
    out = {}
    laws = set()
    for f in fits:
        if not f.success:
            if f.message.startswith("flat data"):
                # a metric that never moved is predicted to stay put: the constant
                v = target.point_estimate[f.source]
                out[f.source] = Prediction(v, v, v)
                laws.add("constant")
            continue
        point, low, high = predict_interval(f, [x_target], DEFAULT_LEVEL)
        out[f.source] = Prediction(float(point[0]), float(low[0]), float(high[0]))
        laws.add(f.law)
    p_beats = {}
    ok = [f for f in fits if f.success and f.boot is not None and len(f.boot)]
    if beliefs and len(ok) == len(fits) and len(ok) > 1:
        from planner.laws.decision import pair_beliefs

        var = None
        if target.noise.known:
            reps = float(np.median(np.concatenate([p.reps for p in target.fit_points.values()])))
            var = {
                s: float(target.noise.mean_variance(out[s].value, reps))
                for s in out
                if math.isfinite(out[s].value)
            }
        for b in pair_beliefs(ok, x_target, measurement_var=var):
            p_beats[(b.a, b.b)] = b.p
    return GroupPrediction(out, ",".join(sorted(laws)), p_beats)


def point_estimate(target: Target) -> GroupPrediction:
    """The baseline: each source's value at x_PE, as if it held at x_T (no interval)."""
    return GroupPrediction(
        {s: Prediction(v) for s, v in target.point_estimate.items()}, "point-estimate"
    )


def _group(target: Target) -> GroupData:
    """The group as the joint laws see it, with each point's variance where every one is
    known (the fits weigh points by its inverse)."""
    points = target.fit_points
    known = bool(points) and all(
        bool(np.all(np.isfinite(p.var) & (p.var > 0))) for p in points.values()
    )
    var = {s: p.var for s, p in points.items()} if known else None
    return GroupData(
        target.study, target.metric, target.lower_is_better, dict(target.fit_data), var
    )


def independent(target: Target) -> GroupPrediction:
    """One law per source, family chosen per source by leave-last-out error."""
    fits = fit_independent(_group(target), n_boot=BACKTEST_BOOTSTRAP)
    return _from_fits(fits, target)


def joint(target: Target) -> GroupPrediction:
    """Joint laws over the group's sources averaged by leave-last-out error; P(a beats b)
    from their joint bootstrap with the model-averaging uncertainty."""
    res = fit_joint(_group(target), n_boot=BACKTEST_BOOTSTRAP)
    return _from_fits(res.fits, target, beliefs=True)


def _fixed(candidate: str) -> Callable[[Target], GroupPrediction]:
    def run(target: Target) -> GroupPrediction:
        res = fit_joint(_group(target), candidates=[candidate], n_boot=BACKTEST_BOOTSTRAP)
        return _from_fits(res.fits, target)

    run.__doc__ = f"The joint law {candidate} for every group."
    return run


def _choose(
    candidates: tuple[str, ...] | None, *, average: bool
) -> Callable[[Target], GroupPrediction]:
    def run(target: Target) -> GroupPrediction:
        res = fit_joint(
            _group(target),
            candidates=list(candidates) if candidates else None,
            n_boot=BACKTEST_BOOTSTRAP,
            average=average,
        )
        return _from_fits(res.fits, target)

    how = "averaged by" if average else "the one chosen by"
    run.__doc__ = f"Joint laws {how} leave-last-out error."
    return run


def group_input(target: Target) -> GroupInput:
    """A backtest group as the table's candidates see it."""
    proxy = None
    if target.proxy is not None:
        proxy = ProxyInput(
            target.proxy.metric, target.proxy.lower_is_better, dict(target.proxy.fit_points)
        )
    return GroupInput(
        study=target.study,
        metric=target.metric,
        lower_is_better=target.lower_is_better,
        points=dict(target.fit_points),
        noise=target.noise,
        chance=target.chance,
        proxy=proxy,
    )


@dataclass(frozen=True)
class TableMethod:
    """A method that chooses for the whole table before predicting each group.

    Attributes:
        candidates: the candidates it weighs (see :mod:`planner.laws.table`).
        description: what it is, for ``--help``.
    """

    candidates: tuple[str, ...]
    description: str

    def gather(self, target: Target) -> Evidence:
        """The group's evidence: its candidates at x_T and inside its fit set."""
        from planner.laws.table import gather

        return gather(
            group_input(target),
            target.x_target,
            candidates=self.candidates,
            n_boot=BACKTEST_BOOTSTRAP,
        )

    def estimate(self, evidence: Sequence[Evidence]) -> TableModel:
        from planner.laws.table import estimate_table

        return estimate_table(evidence, self.candidates)

    def predict(self, target: Target, evidence: Evidence, table: TableModel) -> GroupPrediction:
        from planner.laws.table import predict

        pred = predict(evidence, table)
        if pred is None:
            return GroupPrediction({}, "-")
        values = {
            s: Prediction(float(pred.value[i]), float(pred.low[i]), float(pred.high[i]))
            for i, s in enumerate(pred.sources)
        }
        law = "+".join(f"{m} {w:.2f}" for m, w in pred.weights.items())
        if "joint" in pred.weights and evidence.law:
            law += f" [{evidence.law}]"
        return GroupPrediction(values, law, dict(pred.p_beats))


METHODS: Mapping[str, Callable[[Target], GroupPrediction] | TableMethod] = {
    "table": TableMethod(
        ("point-estimate", "difference", "joint", "proxy"),
        "point estimate, difference model and joint laws (and a proxy where named), "
        "weighed by the table's nested backtest",
    ),
    "difference": TableMethod(
        ("difference",),
        "differences between sources, trends shrunk by the table's empirical-Bayes prior",
    ),
    "joint": joint,
    "independent": independent,
    "point-estimate": point_estimate,
    "constant": _fixed("constant"),
    "loglinear-shared-slope": _fixed("loglinear[b]"),
    "loglinear": _fixed("loglinear"),
    "power-shared": _fixed("power[E,alpha]"),
    # the joint laws' candidates with the single best one chosen instead of averaged
    "joint-select": _choose(None, average=False),
    # the joint laws' averaging over the earlier candidates: a per-source line in log-compute
    # where `joint` now has the power law with a shared asymptote
    "joint-line": _choose(
        ("constant", "loglinear[b]", "loglinear", "power[E,alpha]"), average=True
    ),
    # the candidates and rule before the constant and averaging were added
    "joint-trend": _choose(("loglinear[b]", "loglinear", "power[E,alpha]"), average=False),
    "joint-rich": _choose(
        ("loglinear[b]", "loglinear", "power[E,alpha]", "power[alpha]", "power"), average=False
    ),
}
DEFAULT_METHOD = "table"


def get_method(name: str) -> Callable[[Target], GroupPrediction] | TableMethod:
    """A method by name; FitError with "did you mean" on unknown names."""
    if name in METHODS:
        return METHODS[name]
    raise FitError(
        f"unknown backtest method {name!r}{did_you_mean(name, METHODS)} (known: {', '.join(METHODS)})"
    )
