"""A general-purpose reference solver (scipy SLSQP) for checking the water-filling solver.

Used by the tests and by ``bench/allocate.py`` as the baseline, and as the fallback for
solves with more than one guard-rail constraint.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.optimize import minimize

from planner.allocate.model import Curve


def slsqp(
    curves: Sequence[Curve],
    budget: float,
    *,
    thetas: Sequence[np.ndarray] | None = None,
    x0: np.ndarray | None = None,
    ftol: float = 1e-12,
    extra_constraints: Sequence[dict] = (),
) -> tuple[np.ndarray, float, bool]:
    """Maximise Σ gain_k(D_k) s.t. Σ cost_k(D_k) ≤ budget, 0 ≤ D_k ≤ cap_k with SLSQP.

    Tokens are scaled per source (by what the source alone could buy) so the problem is well
    conditioned; gradients come from the sympy derivatives.

    Args:
        curves: the sources.
        budget: in the curves' cost unit.
        thetas: parameter vectors (default: each curve's point values).
        x0: starting tokens (default: the budget split equally in cost).
        ftol: SLSQP's tolerance.
        extra_constraints: more SLSQP constraint dicts over the *scaled* variables.

    Returns:
        (tokens, objective, success).
    """
    ps = [c.theta if thetas is None else thetas[k] for k, c in enumerate(curves)]
    k_n = len(curves)
    scale = np.empty(k_n)
    for k, c in enumerate(curves):
        hi = c.cap_tokens if np.isfinite(c.cap_tokens) else 1e30
        lo = 1e-30
        for _ in range(200):  # tokens the source alone could buy, by bisection in log space
            mid = np.sqrt(lo * hi)
            if float(c.template.cost(mid, *ps[k])) <= budget:
                lo = mid
            else:
                hi = mid
        scale[k] = lo
    ub = np.array([min(c.cap_tokens, np.inf) for c in curves]) / scale
    bounds = [(0.0, min(u, 1.0)) for u in ub]

    def obj(z: np.ndarray) -> float:
        d = np.maximum(z * scale, 1e-300)
        return -float(sum(float(c.template.gain(d[k], *ps[k])) for k, c in enumerate(curves)))

    def jac(z: np.ndarray) -> np.ndarray:
        d = np.maximum(z * scale, 1e-300)
        return -np.array(
            [float(c.template.dgain(d[k], *ps[k])) * scale[k] for k, c in enumerate(curves)]
        )

    def con(z: np.ndarray) -> float:
        d = np.maximum(z * scale, 1e-300)
        return (
            budget - sum(float(c.template.cost(d[k], *ps[k])) for k, c in enumerate(curves))
        ) / budget

    def con_jac(z: np.ndarray) -> np.ndarray:
        d = np.maximum(z * scale, 1e-300)
        return (
            -np.array(
                [float(c.template.dcost(d[k], *ps[k])) * scale[k] for k, c in enumerate(curves)]
            )
            / budget
        )

    z0 = np.full(k_n, 1.0 / k_n) if x0 is None else np.asarray(x0) / scale
    res = minimize(
        obj,
        z0,
        jac=jac,
        method="SLSQP",
        bounds=bounds,
        constraints=[{"type": "ineq", "fun": con, "jac": con_jac}, *extra_constraints],
        options={"ftol": ftol, "maxiter": 1000},
    )
    d = np.clip(res.x, 0, None) * scale
    return d, -float(res.fun), bool(res.success)
