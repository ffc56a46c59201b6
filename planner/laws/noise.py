"""Measurement noise of the runs: what a single value is worth.

An accuracy measured on n items is a binomial proportion: its variance is p(1-p)/n. Runs of
the same source and compute with different seeds show the spread a retraining adds. Where
the runs table gives ``n_items`` or ``seed``, each point's variance follows from them; the
fits weigh points by the inverse of it, and intervals and decision probabilities add it at
the target. Where neither is given the variance is unknown (NaN) and the fits estimate it
from their residuals, as before.

A point's variance is the variance of the mean of its runs: the per-run variance (the
binomial variance, or the group's pooled seed variance where that is larger) over the
number of runs.

Runs of one source are at the same compute when their computes agree within
:data:`SAME_COMPUTE_RTOL`: a run's compute includes the curation cost its executor
measured (a generator's or a classifier's FLOPs), which can differ a little between
seeds of the same token budget.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

#: computes of one source within this relative distance are one budget (seeds of it)
SAME_COMPUTE_RTOL = 1e-3


def same_compute(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Group computes that agree within :data:`SAME_COMPUTE_RTOL` (neighbours in sorted
    order chain into one group).

    Returns:
        (the groups' mean computes, ascending; each input's group index).
    """
    x = np.asarray(x, dtype=float)
    if x.size == 0:
        return x, np.zeros(0, dtype=int)
    order = np.argsort(x, kind="stable")
    xs = x[order]
    with np.errstate(invalid="ignore", divide="ignore"):
        gap = np.diff(xs) > SAME_COMPUTE_RTOL * np.maximum(np.abs(xs[1:]), np.abs(xs[:-1]))
    sorted_group = np.concatenate([[0], np.cumsum(gap)])
    inv = np.empty(x.size, dtype=int)
    inv[order] = sorted_group
    n = int(sorted_group[-1]) + 1
    centres = np.bincount(inv, weights=x, minlength=n) / np.bincount(inv, minlength=n)
    return centres, inv


def binomial_variance(value: np.ndarray | float, n_items: np.ndarray | float) -> np.ndarray:
    """p(1-p)/n for proportions in [0, 1] with a known evaluation size, NaN elsewhere.

    A measured 0 or 1 says little about p itself, so p is kept half an item inside the
    bounds (the variance of a proportion is never taken as zero).
    """
    p = np.asarray(value, dtype=float)
    n = np.asarray(n_items, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        ok = np.isfinite(p) & np.isfinite(n) & (n >= 1) & (p >= 0) & (p <= 1)
        half = 0.5 / np.where(ok, n, 1.0)
        q = np.clip(p, half, 1.0 - half)
        out = np.where(ok, q * (1.0 - q) / np.where(ok, n, 1.0), np.nan)
    return out


@dataclass(frozen=True, slots=True)
class RunPoint:
    """One run's value of one metric, with what is known about its noise."""

    compute: float
    value: float
    n_items: float | None = None
    seed: int | None = None


@dataclass(frozen=True, slots=True)
class SourcePoints:
    """A source's runs averaged per compute, with each mean's variance.

    Attributes:
        x: the distinct computes, ascending.
        y: the mean value of the runs at each compute.
        var: the variance of each mean (NaN where unknown).
        reps: how many runs each mean averages.
        n_items: the evaluation size (median over the runs; NaN when unknown).
    """

    x: np.ndarray
    y: np.ndarray
    var: np.ndarray
    reps: np.ndarray
    n_items: float = math.nan


@dataclass(frozen=True, slots=True)
class GroupNoise:
    """What a (study, metric) group says about its measurement noise.

    Attributes:
        n_items: the evaluation size (median over the group's runs; NaN when unknown).
        seed_var: the pooled variance between seeds of one source and compute (NaN when no
            compute has two runs).
        seed_dof: its degrees of freedom.
    """

    n_items: float = math.nan
    seed_var: float = math.nan
    seed_dof: int = 0

    @property
    def known(self) -> bool:
        return math.isfinite(self.n_items) or math.isfinite(self.seed_var)

    def run_variance(self, value: np.ndarray | float) -> np.ndarray:
        """The variance of one run's value (NaN when nothing is known)."""
        binom = binomial_variance(value, self.n_items)
        if not math.isfinite(self.seed_var):
            return binom
        return np.where(np.isfinite(binom), np.maximum(binom, self.seed_var), self.seed_var)

    def mean_variance(self, value: np.ndarray | float, reps: np.ndarray | float) -> np.ndarray:
        """The variance of a mean of ``reps`` runs at ``value``."""
        return self.run_variance(value) / np.asarray(reps, dtype=float)


def group_noise(by_source: Mapping[str, Sequence[RunPoint]]) -> GroupNoise:
    """Pool a group's evaluation sizes and seed spreads (see :class:`GroupNoise`)."""
    sizes = [p.n_items for pts in by_source.values() for p in pts if p.n_items]
    ss, dof = 0.0, 0
    for pts in by_source.values():
        at: dict[int, list[float]] = {}
        _, groups = same_compute(np.array([p.compute for p in pts], dtype=float))
        for p, g in zip(pts, groups, strict=True):
            at.setdefault(int(g), []).append(p.value)
        for values in at.values():
            if len(values) > 1:
                v = np.asarray(values, dtype=float)
                ss += float(np.sum((v - v.mean()) ** 2))
                dof += v.size - 1
    return GroupNoise(
        n_items=float(np.median(sizes)) if sizes else math.nan,
        seed_var=ss / dof if dof else math.nan,
        seed_dof=dof,
    )


def averaged(points: Sequence[RunPoint], noise: GroupNoise) -> SourcePoints:
    """A source's runs averaged per compute, each mean with its variance under ``noise``."""
    x = np.array([p.compute for p in points], dtype=float)
    y = np.array([p.value for p in points], dtype=float)
    ux, inv = same_compute(x)
    reps = np.bincount(inv).astype(float)
    uy = np.bincount(inv, weights=y) / reps
    sizes = [p.n_items for p in points if p.n_items]
    n_items = float(np.median(sizes)) if sizes else math.nan
    return SourcePoints(ux, uy, noise.mean_variance(uy, reps), reps, n_items)


def run_variances(points: Sequence[RunPoint], noise: GroupNoise) -> np.ndarray:
    """Each run's own variance under ``noise`` (for fits that keep every run)."""
    return noise.run_variance(np.array([p.value for p in points], dtype=float))


def inverse_variance_weights(var: np.ndarray) -> tuple[np.ndarray | None, float]:
    """Weights ∝ 1/var with mean 1, and the variance of a unit-weight point.

    Returns:
        (weights, unit_variance); (None, 0.0) when some variance is unknown or not
        positive (the fit then weighs points equally and estimates the noise itself).
    """
    v = np.asarray(var, dtype=float)
    if v.size == 0 or not np.all(np.isfinite(v)) or np.any(v <= 0):
        return None, 0.0
    w = 1.0 / v
    mean = float(np.mean(w))
    return w / mean, 1.0 / mean
