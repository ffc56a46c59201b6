"""Prediction methods the backtest can replay, selectable by name."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from planner.backtest.protocol import Prediction, Target
from planner.errors import FitError, did_you_mean
from planner.laws.joint import GroupData, fit_independent, fit_joint
from planner.laws.predict import DEFAULT_LEVEL, predict_interval

# Replicates per group in the backtest; enough for stable 5%/95% quantiles.
BACKTEST_BOOTSTRAP = 400


def _from_fits(fits, target: Target) -> tuple[dict[str, Prediction], str]:
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
    return out, ",".join(sorted(laws))


def point_estimate(target: Target) -> tuple[dict[str, Prediction], str]:
    """The baseline: each source's value at x_PE, as if it held at x_T (no interval)."""
    return {s: Prediction(v) for s, v in target.point_estimate.items()}, "point-estimate"


def _group(target: Target) -> GroupData:
    return GroupData(target.study, target.metric, target.lower_is_better, dict(target.fit_data))


def independent(target: Target) -> tuple[dict[str, Prediction], str]:
    """One law per source, family chosen per source by leave-last-out error."""
    fits = fit_independent(_group(target), n_boot=BACKTEST_BOOTSTRAP)
    return _from_fits(fits, target)


def joint(target: Target) -> tuple[dict[str, Prediction], str]:
    """One joint law over the group's sources, candidate chosen by leave-last-out error."""
    res = fit_joint(_group(target), n_boot=BACKTEST_BOOTSTRAP)
    return _from_fits(res.fits, target)


def _fixed(candidate: str) -> Callable[[Target], tuple[dict[str, Prediction], str]]:
    def run(target: Target) -> tuple[dict[str, Prediction], str]:
        res = fit_joint(_group(target), candidates=[candidate], n_boot=BACKTEST_BOOTSTRAP)
        return _from_fits(res.fits, target)

    run.__doc__ = f"The joint law {candidate} for every group."
    return run


def _choose(
    candidates: tuple[str, ...] | None, *, average: bool
) -> Callable[[Target], tuple[dict[str, Prediction], str]]:
    def run(target: Target) -> tuple[dict[str, Prediction], str]:
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


METHODS: Mapping[str, Callable[[Target], tuple[dict[str, Prediction], str]]] = {
    "joint": joint,
    "independent": independent,
    "point-estimate": point_estimate,
    "constant": _fixed("constant"),
    "loglinear-shared-slope": _fixed("loglinear[b]"),
    "loglinear": _fixed("loglinear"),
    "power-shared": _fixed("power[E,alpha]"),
    # the default's candidates with the single best one chosen instead of averaged
    "joint-select": _choose(None, average=False),
    # the default's averaging over the earlier candidates: a per-source line in log-compute
    # where the default now has the power law with a shared asymptote
    "joint-line": _choose(
        ("constant", "loglinear[b]", "loglinear", "power[E,alpha]"), average=True
    ),
    # the candidates and rule before the constant and averaging were added
    "joint-trend": _choose(("loglinear[b]", "loglinear", "power[E,alpha]"), average=False),
    "joint-rich": _choose(
        ("loglinear[b]", "loglinear", "power[E,alpha]", "power[alpha]", "power"), average=False
    ),
}
DEFAULT_METHOD = "joint"


def get_method(name: str) -> Callable[[Target], tuple[dict[str, Prediction], str]]:
    """A method by name; FitError with "did you mean" on unknown names."""
    if name in METHODS:
        return METHODS[name]
    raise FitError(
        f"unknown backtest method {name!r}{did_you_mean(name, METHODS)} (known: {', '.join(METHODS)})"
    )
