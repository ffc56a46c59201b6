"""Crossovers: the compute at which two sources' predicted curves cross.

A ranking measured at small compute need not hold at the target: when two fitted laws
cross inside the range of interest the point estimate picks the wrong source beyond it.
The crossing is found with ``brentq`` on the difference of the two laws over a log grid,
and its uncertainty from the group's joint bootstrap: each draw takes one of the averaged
laws by its weight, so which law is right is part of the uncertainty.

Where the difference model's view of the group is given (:mod:`planner.laws.pairwise_view`,
built from the study's runs), the crossing is also read from it: the share of its
posterior draws of d_ab(x) = y_a − y_b that change sign in the range, and where its mean
does. Both are reported (``probability``/``compute`` from the joint laws,
``difference_probability``/``difference_compute`` from the difference model);
:attr:`Crossover.shown_probability` is the one a face shows first (the laws screen; the
report has both): the difference model's where it exists. A crossing is a question about a difference, which the difference
model estimates directly, keeping trends only as far as the runs' own nested backtests show
that trends persist; the joint laws extrapolate each source's curvature, and on the real
runs table measured their bootstrap was overconfident about where curves meet. Measured by
``bench/crossings.py`` (Brier score of P(crossing), difference model vs joint laws): on the
over-training study of Gadre et al. (2024), fitted on computes ≤ 0.1·x_T, 0.051 vs 0.073
over 96 pairs of losses and 0.323 vs 0.391 over 459 pairs of accuracies; on synthetic power
laws, where the joint laws' family is the truth or close to it, the joint laws are better
(0.034 vs 0.126 with per-source exponents, 0.053 vs 0.118 with a second power term), which
is why both are kept.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from scipy import optimize

from planner.domain import LawFit
from planner.errors import FitError
from planner.laws.predict import predict, predict_boot

if TYPE_CHECKING:
    from planner.laws.pairwise_view import PairwiseView

GRID_POINTS = 256


@dataclass(frozen=True, slots=True)
class Crossover:
    """Where source ``a``'s law crosses source ``b``'s between ``low`` and ``high``.

    Attributes:
        compute: the first crossing of the point fits, or NaN when they do not cross.
        probability: share of the joint draws (with model averaging) whose curves cross
            in the range (NaN without bootstrap samples).
        samples: crossing computes of the replicates that cross.
        better_after: the source that is better just above ``compute`` (direction-aware).
        difference_probability: share of the difference model's posterior draws of
            a − b that change sign in the range (NaN where no view was given).
        difference_compute: where the difference model's mean a − b first changes sign
            (NaN when it does not, or no view).
        difference_samples: the first crossing of each of its draws that crosses.
    """

    a: str
    b: str
    low: float
    high: float
    compute: float
    probability: float
    samples: np.ndarray
    better_after: str | None = None
    difference_probability: float = math.nan
    difference_compute: float = math.nan
    difference_samples: np.ndarray = field(default_factory=lambda: np.empty(0))

    @property
    def method(self) -> str:
        """Which estimate :attr:`shown_probability` is: ``difference`` or ``joint``."""
        return "difference" if math.isfinite(self.difference_probability) else "joint"

    @property
    def shown_probability(self) -> float:
        """The crossing probability the faces show first (see the module's docstring)."""
        if self.method == "difference":
            return self.difference_probability
        return self.probability

    @property
    def shown_compute(self) -> float:
        """Where the shown estimate crosses (NaN when its mean does not in the range)."""
        return self.difference_compute if self.method == "difference" else self.compute

    def quantiles(self, qs=(0.05, 0.5, 0.95), *, method: str = "joint") -> tuple[float, ...]:
        """Quantiles of the crossing computes of the draws that cross (``method``:
        ``joint``, ``difference`` or ``shown``)."""
        if method == "shown":
            method = self.method
        samples = self.difference_samples if method == "difference" else self.samples
        if samples.size == 0:
            return tuple(math.nan for _ in qs)
        return tuple(float(v) for v in np.quantile(samples, qs))


def _grid(low: float, high: float, n: int = GRID_POINTS) -> np.ndarray:
    if not (low > 0 and high > low):
        raise FitError(f"A crossover range needs 0 < low < high (got {low}, {high}).")
    return np.logspace(math.log10(low), math.log10(high), n)


def first_root(f, grid: np.ndarray, values: np.ndarray) -> float:
    """The first sign change of ``values`` on ``grid`` refined by brentq (NaN if none)."""
    s = np.sign(values)
    idx = np.flatnonzero((s[:-1] * s[1:]) < 0)
    exact = np.flatnonzero(values == 0)
    if exact.size and (not idx.size or exact[0] <= idx[0]):
        return float(grid[exact[0]])
    if not idx.size:
        return math.nan
    i = int(idx[0])
    root = optimize.brentq(lambda lx: f(math.exp(lx)), math.log(grid[i]), math.log(grid[i + 1]))
    return math.exp(root)


def _difference_draws(fit_a: LawFit, fit_b: LawFit, grid: np.ndarray) -> np.ndarray:
    """Draws of a − b on ``grid``: from the group's joint draws with model averaging (each
    draw one law, chosen by its weight; :func:`planner.laws.decision.value_draws`), else,
    for fits the draws cannot pair, each fit's own bootstrap curves."""
    from planner.laws.decision import value_draws

    try:
        vd = value_draws([fit_a, fit_b], grid)
    except FitError:
        n = min(len(fit_a.boot), len(fit_b.boot))
        return predict_boot(fit_a, grid)[:n] - predict_boot(fit_b, grid)[:n]
    return vd.draws[:, 0, :] - vd.draws[:, 1, :]


def crossover(
    fit_a: LawFit,
    fit_b: LawFit,
    low: float,
    high: float,
    *,
    view: PairwiseView | None = None,
) -> Crossover:
    """Find where two sources' laws cross in [low, high], with bootstrap probability.

    Args:
        fit_a, fit_b: fits of the same (study, metric) for two sources.
        low, high: the compute range searched (same unit as the fits' compute).
        view: the difference model's view of the group (see
            :func:`planner.laws.pairwise_view.study_views`); where it holds both sources
            the crossing is also read from its draws.

    Raises:
        FitError: the fits are of different metrics, failed, or the range is invalid.
    """
    if (fit_a.study, fit_a.metric) != (fit_b.study, fit_b.metric):
        raise FitError("Crossovers compare two sources of the same study and metric.")
    grid = _grid(low, high)

    def diff(c: float) -> float:
        return float(predict(fit_a, [c])[0] - predict(fit_b, [c])[0])

    values = predict(fit_a, grid) - predict(fit_b, grid)
    point = first_root(diff, grid, values)
    better_after = None
    if math.isfinite(point):
        after = (
            values[np.searchsorted(grid, point, side="right")] if point < grid[-1] else values[-1]
        )
        a_lower = after < 0
        better_after = fit_a.source if a_lower == fit_a.lower_is_better else fit_b.source
    probability, samples = math.nan, np.empty(0)
    if fit_a.boot is not None and fit_b.boot is not None and len(fit_a.boot) and len(fit_b.boot):
        d = _difference_draws(fit_a, fit_b, grid)  # (B, grid)
        s = np.sign(d)
        change = (s[:, :-1] * s[:, 1:]) < 0
        crosses = change.any(axis=1) & np.all(np.isfinite(d), axis=1)
        probability = float(np.mean(crosses))
        # the replicates' crossing points, interpolated linearly in log x within the cell
        rows = np.flatnonzero(crosses)
        first = np.argmax(change[rows], axis=1)
        lx = np.log(grid)
        d0, d1 = d[rows, first], d[rows, first + 1]
        t = d0 / (d0 - d1)
        samples = np.exp(lx[first] + t * (lx[first + 1] - lx[first]))
    diff_p, diff_at, diff_samples = math.nan, math.nan, np.empty(0)
    if view is not None and fit_a.source in view.sources and fit_b.source in view.sources:
        from planner.laws.pairwise_view import pair_crossing

        pc = pair_crossing(view, fit_a.source, fit_b.source, low, high)
        diff_p, diff_at, diff_samples = pc.probability, pc.compute, pc.samples
    return Crossover(
        a=fit_a.source,
        b=fit_b.source,
        low=low,
        high=high,
        compute=point,
        probability=probability,
        samples=samples,
        better_after=better_after,
        difference_probability=diff_p,
        difference_compute=diff_at,
        difference_samples=diff_samples,
    )
