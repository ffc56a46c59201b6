"""Benchmark: 20 sources x 8 points, fit + 1000-sample bootstrap.

annealplan's batched solver (all sources and all replicates in one numpy Levenberg–Marquardt)
against a naive loop of ``scipy.optimize.curve_fit`` calls (one per source per replicate),
both measured in this run on the same bootstrap data. It prints the speed ratio (goal: at
least 20x) and the largest relative difference in parameters and objective between the two,
to show that both reach the same optimum.

Run: ``.venv/bin/python bench/fit.py [--sources 20] [--points 8] [--boot 1000] [--quick]``
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from scipy.optimize import curve_fit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import quick

from planner.laws.families import compiled, get_family
from planner.laws.fit import fit_many
from planner.laws.lm import batched_lm, make_problem

#: ``--quick``: sizes that run in seconds (explicit flags still win)
QUICK = {"sources": 3, "points": 6, "boot": 20}


def power(x, E, A, alpha):
    return E + A * x ** (-alpha)


def synthetic(sources: int, points: int, rng: np.random.Generator):
    """Noisy power laws: the computes ``x``, ``x`` scaled to at most 1, and ``y`` (S, n)."""
    x = np.logspace(18, 21, points)
    truth = np.column_stack(
        [
            rng.uniform(1.8, 2.4, sources),
            rng.uniform(2.0, 6.0, sources),
            rng.uniform(0.15, 0.5, sources),
        ]
    )
    xs = x / x.max()
    clean = power(xs[None, :], truth[:, :1], truth[:, 1:2], truth[:, 2:3])
    return x, xs, clean + rng.normal(0, 0.02, clean.shape)


def ours(x: np.ndarray, y: np.ndarray, boot: int, rng: np.random.Generator):
    """annealplan: every source's point fit in one batched multi-start solve, then all S·B
    bootstrap replicates (parametric: fitted curve + noise) in one batched solve.

    Returns:
        The point fits (S, p), the bootstrap fits (B, S, p), the bootstrap data (B, S, n)
        (the naive loop fits the same) and the seconds taken.
    """
    S, n = y.shape
    t0 = time.perf_counter()
    theta, noise_sd, _, _ = fit_many("power", x, y, lower_is_better=True)
    p = theta.shape[1]
    problem = make_problem(
        get_family("power"),
        x[None, :],
        y[0],
        np.zeros(n, int),
        np.arange(p)[None, :],
        sources=["s"],
        lower_is_better=True,
    )
    fitted = problem.value(theta)  # (S, n)
    Y = fitted[None, :, :] + noise_sd[None, :, None] * rng.standard_normal((boot, S, n))
    theta_b, _, _ = batched_lm(
        problem, np.tile(theta, (boot, 1)), Y=Y.reshape(boot * S, n), loss="linear"
    )
    seconds = time.perf_counter() - t0
    return theta, theta_b.reshape(boot, S, p), Y.reshape(boot, S, n), seconds


def naive(xs: np.ndarray, y: np.ndarray, Y: np.ndarray):
    """One ``curve_fit`` per source for the point fit, then one per source per replicate.

    Returns:
        The point fits (S, 3), the bootstrap fits (B, S, 3) and the seconds taken.
    """
    B, S, _ = Y.shape
    t0 = time.perf_counter()
    boot = np.zeros((B, S, 3))
    point = np.zeros((S, 3))
    for i in range(S):
        p0 = [y[i].min() - 0.1, y[i][0] - y[i].min(), 0.3]
        point[i], _ = curve_fit(power, xs, y[i], p0=p0, maxfev=20000)
    for b in range(B):
        for i in range(S):
            boot[b, i], _ = curve_fit(power, xs, Y[b, i], p0=point[i], maxfev=20000)
    return point, boot, time.perf_counter() - t0


def report(xs, Y, ours_fits, naive_fits, t_ours, t_naive, t_setup) -> None:
    """Print the times, the ratio and how far apart the two sides' optima are."""
    (ours_point, ours_boot), (point, boot) = ours_fits, naive_fits
    B, S, n = Y.shape

    def sse(params: np.ndarray, yy: np.ndarray) -> np.ndarray:
        return np.sum((power(xs, *np.moveaxis(params, -1, 0)[..., None]) - yy) ** 2, axis=-1)

    obj_ours = sse(ours_boot, Y)
    obj_naive = sse(boot, Y)
    # relative parameter differences, each parameter scaled by its spread over sources
    # (a parameter near zero would make a plain relative difference meaningless)
    scale = np.abs(boot).mean(axis=(0, 1)) + 1e-12
    rel_param = np.max(np.abs(ours_boot - boot) / scale)
    med_param = np.median(np.abs(ours_boot - boot) / scale)
    rel_obj = np.max((obj_ours - obj_naive) / (obj_naive + 1e-12))
    rel_point = np.max(np.abs(ours_point - point) / scale)
    print(f"sources={S} points={n} bootstrap={B} ({S * (B + 1)} curve_fit calls)")
    print(f"annealplan batched fit + bootstrap: {t_ours:8.3f} s")
    print(f"naive curve_fit loop:              {t_naive:8.3f} s")
    print(f"speed-up: {t_naive / t_ours:.1f}x (goal >= 20x)")
    print(
        f"(once per process, not in the ratio: building and compiling the family "
        f"{t_setup:.3f} s; counted in, the ratio is {t_naive / (t_ours + t_setup):.1f}x)"
    )
    print(f"point fit: max relative parameter difference {rel_point:.2e}")
    print(
        f"bootstrap: max relative parameter difference {rel_param:.2e} (median {med_param:.2e}); "
        f"max relative objective excess of ours over curve_fit {rel_obj:.2e} "
        f"(negative: ours lower)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sources", type=int, default=20)
    ap.add_argument("--points", type=int, default=8)
    ap.add_argument("--boot", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    args = quick.parse_args(ap, QUICK)
    rng = np.random.default_rng(args.seed)
    x, xs, y = synthetic(args.sources, args.points, rng)

    # Building the sympy families and generating their numpy code happens once per process
    # (like importing a module; the naive side's model function is likewise defined before
    # its timer): it is done here, timed on its own and printed, not counted in the ratio.
    t0 = time.perf_counter()
    compiled(get_family("power"))
    t_setup = time.perf_counter() - t0

    theta, theta_b, Y, t_ours = ours(x, y, args.boot, rng)
    point, boot, t_naive = naive(xs, y, Y)
    report(xs, Y, (theta, theta_b), (point, boot), t_ours, t_naive, t_setup)


if __name__ == "__main__":
    main()
