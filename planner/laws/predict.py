"""Predictions of fitted laws: point values, bootstrap curves and prediction intervals.

A fit that averages several laws (:attr:`planner.domain.LawFit.average`) is one predictor:
its value is the weighted mean of its members' values, its bootstrap draws average the
members' draws, and its interval carries the shape error of its own held-out predictions.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from planner.domain import LawFit
from planner.errors import FitError
from planner.laws.families import compiled, get_family, variables

# The interval level: a statistics convention, not tuned to any data set.
DEFAULT_LEVEL = 0.90


def _inputs_for(fit: LawFit, compute: object) -> list[np.ndarray]:
    fam = get_family(fit.family)
    arr = np.asarray(compute, dtype=float)
    refs = list(fit.x_refs or [fit.x_ref])
    if len(variables(fam)) > 1:
        arr = np.atleast_2d(arr)
        return [arr[i] / refs[i] for i in range(arr.shape[0])]
    return [arr / fit.x_ref]


def _members(fit: LawFit) -> list[tuple[float, LawFit]]:
    """The averaged laws behind a fit as (weight, fit) pairs; the fit itself when single."""
    if fit.average is None or not fit.average.members:
        return [(1.0, fit)]
    out = []
    for m in fit.average.members:
        member = replace(
            fit,
            family=m.family,
            params=dict(m.params),
            boot=None if m.boot is None else np.asarray(m.boot, dtype=float),
            candidate=m.candidate,
            llo=m.llo,
            # a member without noise draws (too few points for a bootstrap) takes the
            # dominant law's, which the fit carries
            noise_sd_boot=fit.noise_sd_boot if m.noise_sd_boot is None else m.noise_sd_boot,
            average=None,
        )
        out.append((float(m.weight), member))
    return out


def predict(fit: LawFit, compute: object) -> np.ndarray:
    """The fitted law's value at ``compute`` (same unit as the fitted compute).

    A fit that averages several laws (``fit.average``) gives their weighted mean.

    Raises:
        FitError: the fit failed (nothing to predict with).
    """
    if not fit.success:
        raise FitError(f"The fit for {fit.source} failed ({fit.message}); refit with more runs.")
    members = _members(fit)
    if len(members) > 1:
        return sum(w * _predict_one(f, compute) for w, f in members)
    return _predict_one(fit, compute)


def _predict_one(fit: LawFit, compute: object) -> np.ndarray:
    fam = get_family(fit.family)
    P = [np.float64(fit.params[n]) for n in fam.param_names]
    return compiled(fam).value(_inputs_for(fit, compute), P)


def predict_boot(fit: LawFit, compute: object) -> np.ndarray:
    """Predicted values for every bootstrap sample: shape (B, n).

    For a fit that averages several laws, sample i is the weighted average of the
    members' sample i: the average is one predictor, and these are its parameter draws.

    Raises:
        FitError: the fit has no bootstrap samples.
    """
    if fit.boot is None or len(fit.boot) == 0:
        raise FitError(
            f"The fit for {fit.source} has no bootstrap samples; refit with --bootstrap."
        )
    members = _members(fit)
    if len(members) == 1:
        return _predict_boot_one(fit, compute)
    n = len(fit.boot)
    return sum(w * _member_curves(f, compute, n) for w, f in members)


def _member_curves(fit: LawFit, compute: object, n: int) -> np.ndarray:
    """A member's n bootstrap curves (its point curve where it has too few samples)."""
    if fit.boot is not None and len(fit.boot) >= n:
        return _predict_boot_one(replace(fit, boot=np.asarray(fit.boot)[:n]), compute)
    return np.broadcast_to(np.atleast_1d(_predict_one(fit, compute)), (n, np.size(compute)))


def _noise_draws(fit: LawFit, n: int) -> np.ndarray:
    """Per-sample observation noise scale (members' scales averaged by weight)."""
    total = np.zeros(n)
    for w, f in _members(fit):
        sd = np.zeros(n) if f.noise_sd_boot is None else np.asarray(f.noise_sd_boot, dtype=float)
        total += w * (sd[:n] if sd.size >= n else np.full(n, np.mean(sd) if sd.size else 0.0))
    return total


def _predict_boot_one(fit: LawFit, compute: object) -> np.ndarray:
    if fit.boot is None or len(fit.boot) == 0:
        raise FitError(
            f"The fit for {fit.source} has no bootstrap samples; refit with --bootstrap."
        )
    fam = get_family(fit.family)
    X = [np.atleast_1d(v)[None, :] for v in _inputs_for(fit, compute)]
    P = [fit.boot[:, j][:, None] for j in range(len(fam.params))]
    return compiled(fam).value(X, P)


def predict_interval(
    fit: LawFit, compute: object, level: float = DEFAULT_LEVEL, *, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Point prediction and a prediction interval for a new observation at ``compute``.

    The interval holds parameter uncertainty (bootstrap samples) plus observation noise
    (each replicate's noise scale), so it is a prediction interval, not a confidence band;
    beyond the data it adds the law's shape error (see :func:`_shape_error`). An averaged
    fit is treated as one predictor: its draws average the members' draws, and its shape
    error is that of the averaged leave-last-out predictions.

    Returns:
        (point, low, high), each of shape (n,); low/high are NaN without bootstrap samples.
    """
    point = np.atleast_1d(predict(fit, compute))
    if fit.boot is None or len(fit.boot) == 0:
        nan = np.full(point.shape, np.nan)
        return point, nan, nan
    draws = predict_boot(fit, compute)
    sd = _noise_draws(fit, draws.shape[0])
    rng = np.random.default_rng(seed)
    draws = draws + sd[:, None] * rng.standard_normal(draws.shape)
    draws = draws + _shape_error(fit, compute, draws.shape, rng)
    draws = draws[np.all(np.isfinite(draws), axis=1)]
    if draws.shape[0] < 10:
        nan = np.full(point.shape, np.nan)
        return point, nan, nan
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(draws, [tail, 1.0 - tail], axis=0)
    return point, low, high


def _shape_error(fit: LawFit, compute: object, shape: tuple[int, int], rng) -> np.ndarray:
    """Draws of the law's shape (misspecification) error beyond the fitted range.

    Bootstrap samples only say how the parameters vary if the family were right. Beyond
    the data the family's shape is the larger risk, so the leave-last-out extrapolation
    errors (one per source, ``fit.llo.rmse`` over ``fit.llo.n`` of them, made at a
    log-distance ``fit.llo.log_dist``) set a scale that grows linearly with the
    log-distance beyond the largest fitted compute; its uncertainty from so few errors is
    carried by drawing the scale from its posterior (σ²·k/χ²_k), which widens the tails
    like a Student t.

    A held-out error also holds the held-out value's observation noise
    (``fit.llo.noise_rmse``), which the interval already adds in its own draws and which
    does not grow with distance; only the excess over it is taken as shape error. Counting the
    noise twice, and scaling it with distance, made 90% intervals cover 94–100% of
    synthetic targets whose law was among the candidates. The reduced fit's parameter
    error stays in the excess on purpose: it grows with distance, and where no candidate
    is the true law (real data) taking it out as well left the intervals too narrow.
    """
    llo = fit.llo
    if llo is None:
        return np.zeros(shape)
    rmse = llo.rmse
    if math.isfinite(llo.noise_rmse):
        rmse = math.sqrt(max(float(rmse) ** 2 - float(llo.noise_rmse) ** 2, 0.0))
    dist0, k = llo.log_dist, llo.n
    if not dist0 or dist0 <= 0 or k < 1 or not math.isfinite(fit.x_max):
        return np.zeros(shape)
    c = np.atleast_1d(np.asarray(compute, dtype=float))
    if c.ndim > 1:  # multi-variable laws: no notion of a single extrapolation distance
        return np.zeros(shape)
    dist = np.maximum(np.log(c / fit.x_max), 0.0)
    scale = float(rmse) * dist / float(dist0)
    sd = np.sqrt(k / rng.chisquare(k, size=shape[0]))
    return sd[:, None] * scale[None, :] * rng.standard_normal(shape)


__all__ = [
    "DEFAULT_LEVEL",
    "predict",
    "predict_boot",
    "predict_interval",
]
