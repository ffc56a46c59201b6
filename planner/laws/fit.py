"""Fitting laws to points: one source (:func:`fit_law`), many data sets at once
(:func:`fit_many`), and the LawFits of a solved problem (:func:`to_lawfits`).

The solving is done by the batched Levenberg–Marquardt engine in :mod:`planner.laws.lm`;
joint fits over the sources of a group are in :mod:`planner.laws.joint`, predictions and
intervals in :mod:`planner.laws.predict`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import replace

import numpy as np

from planner.domain import LawFit, LeaveLastOut
from planner.errors import FitError
from planner.laws.families import get_family, start_vectors, variables
from planner.laws.lm import LawProblem, LawSolution, batched_lm, bootstrap, make_problem, solve_law
from plugins.contract import LawFamily


def fit_law(
    family: LawFamily | str,
    compute: Sequence[float] | np.ndarray,
    values: Sequence[float] | np.ndarray,
    *,
    lower_is_better: bool | None = None,
    study: str = "default",
    metric: str = "metric",
    source: str = "source",
    n_boot: int = 0,
    scheme: str = "parametric",
    loss: str = "soft_l1",
    seed: int = 0,
) -> LawFit:
    """Fit one family to one source's points.

    Args:
        family: a family or its name.
        compute: compute per point (any positive unit); for multi-variable families an
            array of shape (k, n) (e.g. params and tokens).
        values: the metric per point, in its own units.
        lower_is_better: the metric's direction (fixes the power law's sign); None: free.
        study, metric, source: labels copied into the fit.
        n_boot: bootstrap replicates (0: none).
        scheme, loss, seed: bootstrap scheme, robust loss and random seed.

    Returns:
        A LawFit; ``success=False`` with a message when the data cannot support the fit.

    Raises:
        FitError: bad input (shapes, non-finite values, non-positive compute, unknown names).
    """
    fam = get_family(family) if isinstance(family, str) else family
    k = len(variables(fam))
    inputs = np.atleast_2d(np.asarray(compute, dtype=float)) if k > 1 else None
    if k > 1:
        if inputs.shape[0] != k:
            raise FitError(f"Family {fam.name!r} needs {k} input rows (e.g. params and tokens).")
        for row in inputs:
            check_xy(row, values, f" for {source}")
        y = np.asarray(values, dtype=float)
    else:
        x, y = check_xy(compute, values, f" for {source}")
        inputs = x[None, :]
    p = len(fam.params)
    problem = make_problem(
        fam,
        inputs,
        y,
        np.zeros(y.size, int),
        np.arange(p)[None, :],
        sources=[source],
        lower_is_better=lower_is_better,
    )
    sol = solve_law(problem, loss=loss)
    boot = sd = None
    if n_boot and sol.success:
        boot, sd = bootstrap(problem, sol, n_boot, scheme=scheme, loss=loss, seed=seed)
    [fit] = to_lawfits(
        problem, sol, study=study, metric=metric, method="independent", boot=boot, boot_sd=sd
    )
    return fit


def fit_many(
    family: LawFamily | str,
    compute: np.ndarray,
    Y: np.ndarray,
    *,
    lower_is_better: bool | None = None,
    n_boot: int = 0,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Fit many data sets that share their compute values, all at once (plain least squares).

    For simulations and benchmarks: T data sets of n points are fitted by one batched
    multi-start Levenberg–Marquardt, then bootstrapped together with the same parametric
    scheme as :func:`bootstrap` (noise scale drawn from its posterior).

    Args:
        family: the family or its name.
        compute: shape (n,), positive.
        Y: shape (T, n).
        lower_is_better: the metrics' direction.
        n_boot: bootstrap replicates per data set (0: none).
        seed: random seed.

    Returns:
        (theta (T, P), noise_sd (T,), boot (T, B, P), boot_sd (T, B)); x is scaled by
        ``max(compute)``.
    """
    fam = get_family(family) if isinstance(family, str) else family
    Y = np.atleast_2d(np.asarray(Y, dtype=float))
    x, _ = check_xy(compute, Y[0])
    T, n = Y.shape
    p = len(fam.params)
    if n <= p:
        raise FitError(f"fit_many needs more points ({n}) than parameters ({p}).")
    problem = make_problem(
        fam,
        x[None, :],
        Y[0],
        np.zeros(n, int),
        np.arange(p)[None, :],
        sources=["s"],
        lower_is_better=lower_is_better,
    )
    problem = replace(problem, y_scale=float(np.mean(np.std(Y, axis=1))) or 1.0)
    starts = np.stack(
        [np.clip(v, problem.lo, problem.hi) for v in start_vectors(fam, problem.X.T, np.mean(Y, 0))]
    )
    k = starts.shape[0]
    theta, cost, _ = batched_lm(problem, np.repeat(starts, T, axis=0), Y=np.tile(Y, (k, 1)))
    best = np.argmin(cost.reshape(k, T), axis=0)
    theta = theta.reshape(k, T, p)[best, np.arange(T)]
    resid = problem.value(theta) - Y
    dof = n - p
    noise_sd = np.sqrt(np.sum(resid**2, axis=1) / dof)
    if not n_boot:
        return theta, noise_sd, np.empty((T, 0, p)), np.empty((T, 0))
    rng = np.random.default_rng(seed)
    sd = noise_sd[:, None] * np.sqrt(dof / rng.chisquare(dof, size=(T, n_boot)))
    fitted = problem.value(theta)  # (T, n)
    Yb = fitted[:, None, :] + sd[..., None] * rng.standard_normal((T, n_boot, n))
    tb, _, _ = batched_lm(problem, np.repeat(theta, n_boot, axis=0), Y=Yb.reshape(T * n_boot, n))
    return theta, noise_sd, tb.reshape(T, n_boot, p), sd


def check_xy(compute: object, values: object, what: str = "") -> tuple[np.ndarray, np.ndarray]:
    """Validate compute and values arrays; raise FitError on bad input."""
    try:
        x = np.asarray(compute, dtype=float)
        y = np.asarray(values, dtype=float)
    except (TypeError, ValueError) as e:
        raise FitError(f"Compute and values must be numbers{what}: {e}.") from e
    if x.ndim != 1 or y.ndim != 1 or x.shape != y.shape:
        raise FitError(
            f"Compute and values must be 1-D arrays of the same length{what} "
            f"(got shapes {x.shape} and {y.shape})."
        )
    if x.size == 0:
        raise FitError(f"No points to fit{what}: import runs first (annealplan runs import).")
    if not np.all(np.isfinite(x)) or not np.all(np.isfinite(y)):
        raise FitError(f"Compute and values must be finite{what}: remove NaN/inf rows.")
    if np.any(x <= 0):
        raise FitError(f"Compute must be positive{what}: a law in log-compute needs x > 0.")
    return x, y


def to_lawfits(
    problem: LawProblem,
    sol: LawSolution,
    *,
    study: str,
    metric: str,
    method: str,
    boot: np.ndarray | None = None,
    boot_sd: np.ndarray | None = None,
    candidate: str = "",
    llo_scores: Mapping[str, float] | None = None,
    llo: LeaveLastOut | None = None,
) -> list[LawFit]:
    """Split a solved problem into one LawFit per source (shared params repeated).

    ``candidate``, ``llo_scores`` and ``llo`` say how the law was chosen (see
    :class:`LawFit`); they are the same for every source.
    """
    names = problem.family.param_names
    out = []
    for s, source in enumerate(problem.sources):
        cols = problem.layout[s]
        m = problem.src == s
        theta_s = sol.theta[cols]
        cov = sol.covariance[np.ix_(cols, cols)] if sol.covariance is not None else None
        b = boot[:, cols] if boot is not None and boot.size else None
        xmax = float(np.max(problem.X[0, m]) * problem.x_ref) if m.any() else math.nan
        out.append(
            LawFit(
                study=study,
                metric=metric,
                source=source,
                family=problem.family.name,
                method=method,
                params={k: float(v) for k, v in zip(names, theta_s, strict=True)},
                x_ref=problem.x_ref,
                covariance=cov,
                boot=b,
                loss=sol.cost,
                success=sol.success,
                message=sol.message,
                nfev=sol.nfev,
                n_points=int(m.sum()),
                x_max=xmax,
                lower_is_better=bool(problem.lower_is_better),
                x_refs=tuple(problem.x_refs),
                noise_sd=sol.noise_sd,
                dof=sol.dof,
                f_scale=sol.f_scale,
                noise_sd_boot=boot_sd if boot_sd is not None and boot_sd.size else None,
                candidate=candidate,
                llo_scores=dict(llo_scores or {}),
                llo=llo,
            )
        )
    return out


__all__ = ["check_xy", "fit_law", "fit_many", "to_lawfits"]
