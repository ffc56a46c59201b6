"""Shared helpers of the design tests: true laws, noisy runs and a fast bootstrap fitter."""

from __future__ import annotations

import numpy as np

from planner.allocate.problem import Control, CostSetup, SourceInput, build_problem
from planner.allocate.testing import families, make_fit, saturating_power
from planner.units import Unit

FAMILY = saturating_power()
X_REF = 1e9
ALPHAS = np.linspace(0.05, 2.0, 79)
SETUP = CostSetup(Unit.GPU_HOURS, model_params=135e6)


def law(p, tokens):
    E, A, alpha = p
    return E - A * (np.asarray(tokens) / X_REF) ** (-alpha)


def fit(tokens, ys, sigma, rng, n_boot=100):
    """Variable projection over alpha (E, A linear), parametric bootstrap with known noise."""
    x = np.asarray(tokens, float) / X_REF
    y = np.asarray(ys, float)
    ystar = np.vstack([y, y + sigma * rng.standard_normal((n_boot, y.size))])  # row 0: data
    best_sse = np.full(ystar.shape[0], np.inf)
    best = np.zeros((ystar.shape[0], 3))
    for a in ALPHAS:
        X = np.column_stack([np.ones_like(x), -(x ** (-a))])
        coef = np.linalg.pinv(X) @ ystar.T  # (2, B+1)
        sse = ((X @ coef - ystar.T) ** 2).sum(axis=0)
        better = sse < best_sse
        best_sse = np.where(better, sse, best_sse)
        best[better] = np.column_stack([coef[0], coef[1], np.full(coef.shape[1], a)])[better]
    return best[0], best[1:]


def problem_from(data, sigma, control, rng, n_boot=100):
    """data: source → (tokens list, values list)."""
    inputs = []
    for name, (toks, ys) in data.items():
        p, boot = fit(toks, ys, sigma, rng, n_boot)
        f = make_fit(
            name,
            FAMILY,
            dict(zip(FAMILY.param_names, p, strict=True)),
            x_ref=X_REF,
            boot=boot,
            x_max=float(max(toks)),
        )
        inputs.append(SourceInput(name, {"acc": f}))
    return build_problem(inputs, families(), {"acc": Control(control)}, SETUP, weights={"acc": 1.0})


class FeeCost:
    """A curation cost model: a fixed fee plus a price per token (GPU-hours)."""

    unit = Unit.GPU_HOURS

    def __init__(self, fee, per_token):
        self.fee, self.per_token = fee, per_token

    def expr(self, n):
        import sympy

        return sympy.Float(self.fee) + sympy.Float(self.per_token) * n


def problem_with(data, sigma, control, rng, costs, n_boot=100, truth=None):
    """Like problem_from, with curation cost models; ``truth`` (source → params) gives the
    true laws instead of fits (no bootstrap)."""
    inputs = []
    for name in costs:
        if truth is not None:
            p, boot, xm = truth[name], None, float("nan")
        else:
            toks, ys = data[name]
            p, boot = fit(toks, ys, sigma, rng, n_boot)
            xm = float(max(toks))
        f = make_fit(
            name,
            FAMILY,
            dict(zip(FAMILY.param_names, p, strict=True)),
            x_ref=X_REF,
            boot=boot,
            x_max=xm,
        )
        inputs.append(SourceInput(name, {"acc": f}, curation=costs[name]))
    return build_problem(inputs, families(), {"acc": Control(control)}, SETUP, weights={"acc": 1.0})
