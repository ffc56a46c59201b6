"""Benchmark: how well crossing probabilities are calibrated, the difference model's against
the joint laws'.

Two kinds of truth:

- synthetic loss groups whose true curves are known (``shared``: one exponent, never
  cross; ``crossing``: each source its own exponent; ``two-term``: a second power term no
  candidate law has), three sources at six doublings: a pair crossed when its true curves
  change order between the smallest compute and 16× the largest;
- a real runs table (``--runs``, e.g. the one ``examples/gadre2024/convert.py`` writes),
  fitted on computes ≤ F·x_T as the backtest does: a pair crossed when its measured order
  at x_PE differs from its measured order at x_T.

Each pair's P(crossing in the range) from the joint laws' bootstrap
(``Crossover.probability``) and from the difference model's posterior draws
(``Crossover.difference_probability``) is scored by the Brier score and the log loss. It
prints, per set, both scores and the ratio of the difference model's Brier score to the
joint laws' (below 1: the difference model is better calibrated).

Run: ``.venv/bin/python bench/crossings.py [--groups 40] [--runs RUNS.csv] [--quick]``
"""

from __future__ import annotations

import argparse
import itertools
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import quick

from planner.domain import Observation
from planner.laws.crossover import crossover
from planner.laws.joint import GroupData, fit_joint
from planner.laws.pairwise_view import Group, fits_common_level, pairwise_views

QUICK = {"groups": 4, "boot": 20, "kinds": "crossing"}
X = 1e18 * 2.0 ** np.arange(6)


def synthetic(kind: str, groups: int, rng: np.random.Generator):
    """Observations and, per group, the true curves minus their shared asymptote."""
    s = X / 1e18
    obs, truth = [], {}
    for g in range(groups):
        E, alpha = rng.uniform(1.5, 3.0), rng.uniform(0.2, 0.5)
        curves = []
        for j in range(3):
            A = rng.uniform(0.5, 1.5)
            a_s = alpha * (1 + 0.15 * rng.standard_normal()) if kind == "crossing" else alpha
            B = rng.uniform(0.0, 1.5) if kind == "two-term" else 0.0
            curves.append((A, a_s, B, 2.2 * alpha))
            for c, m in zip(X, E + A * s**-a_s + B * s ** -(2.2 * alpha), strict=True):
                y = float(m + 0.02 * rng.standard_normal())
                obs.append(Observation(f"g{g}", "loss", f"s{j}", float(c), y))
        truth[f"g{g}"] = curves
    return obs, truth


def _fit_groups(groups: list[Group], lower: bool, boot: int):
    fits, common = {}, {}
    for g in groups:
        known = all(bool(np.all(np.isfinite(p.var) & (p.var > 0))) for p in g.points.values())
        var = {s: p.var for s, p in g.points.items()} if known else None
        data = {s: (p.x, p.y) for s, p in g.points.items()}
        res = fit_joint(GroupData(g.study, g.metric, lower, data, var), n_boot=boot)
        fits[(g.study, g.metric)] = {f.source: f for f in res.fits}
        common[(g.study, g.metric)] = fits_common_level(res.fits)
    return fits, pairwise_views(groups, common=common)


def score(rows: list[tuple[float, float, float]], label: str) -> float:
    """Print both methods' scores; return the ratio of their Brier scores."""
    r = np.array(rows, dtype=float)
    y = r[:, 0]
    briers = []
    print(f"{label}: {len(r)} pairs, {int(y.sum())} crossed")
    for name, col in (("joint laws", 1), ("difference model", 2)):
        ok = np.isfinite(r[:, col])
        p = np.clip(r[ok, col], 1e-3, 1 - 1e-3)
        brier = float(np.mean((r[ok, col] - y[ok]) ** 2))
        loss = float(-np.mean(y[ok] * np.log(p) + (1 - y[ok]) * np.log(1 - p)))
        briers.append(brier)
        print(f"  {name:>17}: Brier {brier:.3f}  log loss {loss:.3f}")
    ratio = briers[1] / briers[0] if briers[0] > 0 else math.inf
    print(f"  ratio Brier difference/joint: {ratio:.3f}")
    return ratio


def synthetic_rows(kind: str, groups: int, boot: int, seed: int):
    obs, truth = synthetic(kind, groups, np.random.default_rng(seed))
    from planner.laws.pairwise_view import groups_from_observations

    fits, views = _fit_groups(groups_from_observations(obs), True, boot)
    low, high = float(X[0]), float(X[-1]) * 16
    grid = np.geomspace(low, high, 512) / 1e18
    rows = []
    for g, curves in truth.items():
        for a, b in itertools.combinations(range(3), 2):

            def f(p):
                return p[0] * grid ** -p[1] + p[2] * grid ** -p[3]

            d = f(curves[a]) - f(curves[b])
            crossed = float(np.any(np.sign(d[:-1]) * np.sign(d[1:]) < 0))
            fa, fb = fits[(g, "loss")][f"s{a}"], fits[(g, "loss")][f"s{b}"]
            if fa.success and fb.success:
                c = crossover(fa, fb, low, high, view=views.get((g, "loss")))
                rows.append((crossed, c.probability, c.difference_probability))
    return rows


def table_rows(path: str, fraction: float, boot: int, losses: bool):
    from planner.backtest.protocol import build_targets
    from planner.store.runs_table import read_runs_table

    obs = read_runs_table(path).observations()
    metrics = sorted({o.metric for o in obs if o.metric.startswith("loss") == losses})
    targets = build_targets(obs, fraction, metrics=metrics)
    groups = [Group(t.study, t.metric, dict(t.fit_points), t.chance) for t in targets]
    lower = {(t.study, t.metric): t.lower_is_better for t in targets}
    fits, views = {}, {}
    for direction in (True, False):
        part = [g for g in groups if lower[(g.study, g.metric)] == direction]
        if part:
            f, v = _fit_groups(part, direction, boot)
            fits.update(f)
            views.update(v)
    rows = []
    for t in targets:
        key = (t.study, t.metric)
        view = views.get(key)
        for a, b in itertools.combinations(sorted(t.actual), 2):
            fa, fb = fits[key].get(a), fits[key].get(b)
            if fa is None or fb is None or not (fa.success and fb.success):
                continue
            d_pe = t.point_estimate[a] - t.point_estimate[b]
            d_t = t.actual[a] - t.actual[b]
            if not (math.isfinite(d_pe) and math.isfinite(d_t)) or d_pe == 0 or d_t == 0:
                continue
            c = crossover(fa, fb, t.x_pe, t.x_target, view=view)
            rows.append(
                (float(np.sign(d_pe) != np.sign(d_t)), c.probability, c.difference_probability)
            )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--groups", type=int, default=40)
    ap.add_argument("--boot", type=int, default=100)
    ap.add_argument("--kinds", default="shared,crossing,two-term")
    ap.add_argument("--runs", help="a runs table (CSV or Parquet) to score as well")
    ap.add_argument("--fraction", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=7)
    args = quick.parse_args(ap, QUICK)
    for kind in filter(None, args.kinds.split(",")):
        score(synthetic_rows(kind, args.groups, args.boot, args.seed), f"synthetic {kind}")
    if args.runs:
        for losses in (True, False):
            rows = table_rows(args.runs, args.fraction, args.boot, losses)
            if rows:
                score(rows, f"{Path(args.runs).name} {'losses' if losses else 'accuracies'}")


if __name__ == "__main__":
    main()
