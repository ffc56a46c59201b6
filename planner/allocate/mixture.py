"""The mixture check: a plan's gain combines single-source gains by a rule (see
:mod:`planner.allocate.combine`), so a plan proposes one mixed anneal that tests it, and
measured mixed runs are set beside their predicted gain.

A run that anneals on several sources at once names its components in its source, joined
by ``+`` (``a+b`` or ``a@0.7+b@0.3``); such runs are never fitted as sources.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from planner.allocate.problem import AllocationProblem
from planner.allocate.solve import evaluate_plan
from planner.domain import Confirmation, MixedRunCheck

_MIX_PART = re.compile(r"^\s*([^@]+?)\s*(?:@\s*([\d.]+(?:e[-+]?\d+)?))?\s*$", re.I)


def parse_mixture(source: str) -> dict[str, float] | None:
    """Read a mixed run's source name: ``a+b`` (equal shares) or ``a@0.7+b@0.3``.

    This is the convention for runs that anneal on several sources at once: the run's
    source names its components joined by ``+``, each optionally with its share of the run's
    source tokens after ``@``; missing shares split what is left equally. Returns None for a
    single-source name.
    """
    parts = [p for p in source.split("+") if p.strip()]
    if len(parts) < 2:
        return None
    out: dict[str, float | None] = {}
    for p in parts:
        m = _MIX_PART.match(p)
        if not m:
            return None
        out[m[1]] = float(m[2]) if m[2] else None
    given = sum(v for v in out.values() if v is not None)
    free = [k for k, v in out.items() if v is None]
    rest = max(1.0 - given, 0.0) / len(free) if free else 0.0
    shares = {k: (v if v is not None else rest) for k, v in out.items()}
    total = sum(shares.values())
    return {k: v / total for k, v in shares.items()} if total > 0 else None


def confirmation_anneal(
    problem: AllocationProblem, tokens: np.ndarray, spend: float, *, max_boot: int = 400
) -> Confirmation | None:
    """A mixed anneal of the chosen mix, scaled down to cost ``spend``, to test the rule
    that combines the sources' gains.

    Returns:
        The mixture (``a@0.6+b@0.4``), its tokens, the gain the plan's combination rule
        predicts for it and the additive prediction, each with its 90% interval over the
        bootstrap rows; None when the plan uses nothing.
    """
    used = [k for k in range(len(tokens)) if tokens[k] > 0]
    if not used:
        return None
    share = tokens / tokens.sum()
    lo, hi = 0.0, 1.0
    curves = problem.curves
    for _ in range(80):  # scale s so the mix at s·tokens costs `spend`
        mid = 0.5 * (lo + hi)
        c = sum(float(curves[k].cost(mid * tokens[k])) for k in used)
        lo, hi = (mid, hi) if c <= spend else (lo, mid)
    scaled = lo * tokens
    rule = problem.rule
    pred = evaluate_plan(problem, scaled[None, :], None)
    band: dict[str, float | None] = {}
    B = min(problem.n_boot, max_boot)
    if B > 1:
        rows = evaluate_plan(problem, np.broadcast_to(scaled, (B, len(tokens))), np.arange(B))
        band["predicted_low"], band["predicted_high"] = (
            float(v) for v in np.nanpercentile(rule.combine(rows), (5.0, 95.0))
        )
        band["additive_low"], band["additive_high"] = (
            float(v) for v in np.nanpercentile(rows.sum(axis=1), (5.0, 95.0))
        )
    return Confirmation(
        source="+".join(f"{problem.names[k]}@{share[k]:.3g}" for k in used),
        tokens=float(scaled.sum()),
        tokens_per_source={problem.names[k]: float(scaled[k]) for k in used},
        predicted_gain=float(rule.combine(pred)[0]),
        additive_gain=float(pred.sum()),
        **band,
    )


def compare_mixed_runs(
    problem: AllocationProblem, runs: Sequence[tuple[str, float, float]]
) -> list[MixedRunCheck]:
    """Measured vs predicted gain of mixed runs (the separability check).

    Args:
        runs: ``(source, tokens, measured value)`` of the main (first weighted) metric.
    """
    metric = next(iter(problem.weights))
    ctrl = problem.controls.get(metric)
    out = []
    for source, tok, value in runs:
        shares = parse_mixture(source)
        if not shares or ctrl is None or not np.isfinite(tok):
            continue
        unknown = [s for s in shares if s not in problem.names]
        if unknown:
            out.append(MixedRunCheck(source, skipped=f"unknown source(s) {', '.join(unknown)}"))
            continue
        tokens = np.array([[shares.get(n, 0.0) * tok for n in problem.names]])
        pred_by = evaluate_plan(problem, tokens, None)
        w = problem.weights[metric]
        combined = float(problem.rule.combine(pred_by)[0])
        pred = combined / w if len(problem.weights) == 1 else float("nan")
        lib = any(i.fits[metric].lower_is_better for i in problem.inputs if metric in i.fits)
        measured = (ctrl.value - value) if lib else (value - ctrl.value)
        out.append(
            MixedRunCheck(
                source=source,
                tokens=float(tok),
                measured_gain=float(measured),
                predicted_gain=pred,
                difference=float(measured - pred),
            )
        )
    return out
