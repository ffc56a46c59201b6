"""Benchmark: P(in optimal plan) against a known optimum, from the laws' bootstrap rows as
solved and from those rows recalibrated to the difference model
(``--p-in-optimal-from difference``; :mod:`planner.allocate.pairwise_view`).

Two sources with a licence fee so large that the budget buys one: "fast" saturates early,
"slow" is behind at every measured run but truly better at the budget (their curves cross
beyond the ladder). Each source is measured at 3 or 5 budgets with noise, its law fitted
with a bootstrap (as ``tests/unit/design`` does), and the difference model's view built
from the same runs. It prints, per ladder, the Brier score of P(in optimal plan) against
the true optimum and the mean P of the truly optimal source, both ways, and the ratio of
the recalibrated Brier score to the laws' (above 1: the recalibration is worse here).

Run: ``.venv/bin/python bench/p_in_optimal.py [--seeds 20] [--boot 200] [--quick]``
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import quick

from planner.allocate.pairwise_view import p_in_optimal
from planner.allocate.solve import solve_rows
from planner.domain import Observation
from planner.laws.pairwise_view import study_views
from tests.unit.design.sim import FeeCost, law, problem_with

QUICK = {"seeds": 2, "boot": 40}
TRUE = {"fast": (0.50, 0.10, 1.0), "slow": (0.56, 0.22, 0.30)}
COSTS = {"fast": FeeCost(1200.0, 1e-10), "slow": FeeCost(1200.0, 1e-10)}
CONTROL, SIGMA, BUDGET = 0.38, 0.01, 2000.0
LADDERS = {3: [1e8, 3e8, 1e9], 5: [1e8, 3e8, 1e9, 3e9, 1e10]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--boot", type=int, default=200)
    args = quick.parse_args(ap, QUICK)
    truth = problem_with(None, 0.0, CONTROL, None, COSTS, truth=TRUE)
    optimal = (solve_rows(truth, np.array([BUDGET])).sol.tokens[0] > 0).astype(float)
    k_opt = int(np.argmax(optimal))
    for n, toks in LADDERS.items():
        laws, recal = [], []
        for seed in range(args.seeds):
            rng = np.random.default_rng(seed)
            data = {
                k: (toks, [law(p, t) + SIGMA * rng.standard_normal() for t in toks])
                for k, p in TRUE.items()
            }
            problem = problem_with(data, SIGMA, CONTROL, rng, COSTS, n_boot=args.boot)
            obs = [
                Observation("s", "acc", k, t, v)
                for k, (ts, vs) in data.items()
                for t, v in zip(ts, vs, strict=True)
            ]
            views = study_views(obs, [s.fits["acc"] for s in problem.inputs])
            asked = dataclasses.replace(
                problem, pairwise={"acc": views[("s", "acc")]}, p_in_optimal_from="difference"
            )
            sample = np.arange(args.boot)
            bt = solve_rows(problem, np.full(args.boot, BUDGET), sample).sol.tokens
            laws.append(p_in_optimal(problem, BUDGET, bt, sample))
            recal.append(p_in_optimal(asked, BUDGET, bt, sample))
        laws_p, recal_p = np.array(laws), np.array(recal)
        b_laws = float(np.mean((laws_p - optimal) ** 2))
        b_recal = float(np.mean((recal_p - optimal) ** 2))
        print(
            f"{n} runs per source, {args.seeds} seeds: Brier laws {b_laws:.3f}, recalibrated "
            f"{b_recal:.3f}; mean P(optimal source) laws {laws_p[:, k_opt].mean():.2f}, "
            f"recalibrated {recal_p[:, k_opt].mean():.2f}"
        )
        print(f"  ratio Brier recalibrated/laws: {b_recal / max(b_laws, 1e-12):.3f}")


if __name__ == "__main__":
    main()
