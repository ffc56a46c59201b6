"""Benchmark: KKT water-filling vs scipy SLSQP on 50 sources × 100 budgets.

Both solve the same random concave instances (saturating power-law gains, affine costs, some
supply caps) in the same run. Prints both wall times, the speed ratio and the largest relative
objective difference (positive: water-filling found more gain).

    .venv/bin/python bench/allocate.py [--sources 50] [--budgets 100] [--seed 0] [--quick]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import sympy
from common import quick

from planner.allocate.model import N_TOKENS, make_curve
from planner.allocate.reference import slsqp
from planner.allocate.solve import Batch, solve_batch

#: ``--quick``: sizes that run in seconds (explicit flags still win)
QUICK = {"sources": 5, "budgets": 5}


def instance(k: int, rng: np.random.Generator) -> list:
    """k sources with gains a·(1 − (1 + n/d0)^−alpha) and affine costs (and some caps)."""
    a, d0, alpha = sympy.symbols("a d0 alpha", positive=True)
    gain = a * (1 - (1 + N_TOKENS / d0) ** (-alpha))
    return [
        make_curve(
            f"s{i}",
            gain,
            sympy.Float(rng.uniform(0.5, 3.0) * 1e-6) * N_TOKENS,
            {a: rng.uniform(0.2, 2.0), d0: 10 ** rng.uniform(5, 7), alpha: rng.uniform(0.2, 0.9)},
            cap_tokens=10 ** rng.uniform(6.5, 8) if rng.random() < 0.3 else None,
        )
        for i in range(k)
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sources", type=int, default=50)
    ap.add_argument("--budgets", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    args = quick.parse_args(ap, QUICK)
    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    curves = instance(args.sources, rng)
    t_compile = time.perf_counter() - t0
    budgets = np.geomspace(1.0, 1e3, args.budgets)

    t0 = time.perf_counter()
    batch = Batch(curves, [c.theta[None] for c in curves], budgets)
    ours = solve_batch(batch)
    t_ours = time.perf_counter() - t0

    t0 = time.perf_counter()
    ref = np.empty(budgets.size)
    fails = 0
    for i, b in enumerate(budgets):
        _, ref[i], ok = slsqp(curves, float(b), ftol=1e-12)
        fails += not ok
    t_ref = time.perf_counter() - t0

    rel = (ours.total - ref) / np.abs(ref)
    print(
        f"instance: {args.sources} sources × {args.budgets} budgets (compile {t_compile:.2f} s, once)"
    )
    print(f"water-filling (vectorised over budgets): {t_ours * 1e3:9.1f} ms")
    print(
        f"SLSQP (ftol=1e-12, one solve per budget): {t_ref * 1e3:9.1f} ms ({fails} not converged)"
    )
    print(f"speed ratio SLSQP / water-filling: {t_ref / t_ours:.1f}x")
    print(f"max |objective difference| (relative): {np.max(np.abs(rel)):.2e}")
    print(f"min (ours − SLSQP)/|SLSQP|: {np.min(rel):+.2e}  (negative: SLSQP found more)")
    print(f"budget overspend (max, relative): {np.max(ours.spent / budgets - 1):+.1e}")


if __name__ == "__main__":
    main()
