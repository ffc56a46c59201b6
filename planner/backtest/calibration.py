"""How well stated probabilities of decisions match what happened.

A method that says "a beats b with P = 0.8" should be right about 80% of the time on such
pairs. Over a backtest's pairs (each a probability p and whether a really beat b) this
module gives the Brier score, the expected calibration error over ten equal-width bins, and
how many decisions are confident (P ≥ 0.8 or ≤ 0.2) and how often those are right.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: bins of the expected calibration error (equal width over [0, 1])
ECE_BINS = 10
#: a decision is confident when P(a beats b) is at least this far from 1/2 (P ≥ 0.8 or ≤ 0.2)
CONFIDENT = 0.8


@dataclass(frozen=True, slots=True)
class Calibration:
    """Scores of stated probabilities against outcomes.

    Attributes:
        pairs: pairs with a stated probability.
        brier: mean squared difference of P(a beats b) and the outcome (1 or 0).
        calibration_error: expected calibration error, |mean P - share right| per bin
            weighted by the bin's pairs (:data:`ECE_BINS` equal-width bins).
        confident_share: share of pairs with P ≥ 0.8 or ≤ 0.2.
        confident_accuracy: share of those whose more likely side happened (NaN if none).
    """

    pairs: int
    brier: float
    calibration_error: float
    confident_share: float
    confident_accuracy: float


def calibration(probabilities: Sequence[float], outcomes: Sequence[float]) -> Calibration:
    """Brier score, expected calibration error and confident decisions.

    Args:
        probabilities: P(a beats b) per pair, in [0, 1].
        outcomes: 1 where a beat b, 0 where b beat a.

    Returns:
        A :class:`Calibration`; its scores are NaN when there are no pairs.
    """
    p = np.asarray(probabilities, dtype=float)
    y = np.asarray(outcomes, dtype=float)
    keep = np.isfinite(p)
    p, y = np.clip(p[keep], 0.0, 1.0), y[keep]
    if p.size == 0:
        return Calibration(0, math.nan, math.nan, math.nan, math.nan)
    brier = float(np.mean((p - y) ** 2))
    bins = np.minimum((p * ECE_BINS).astype(int), ECE_BINS - 1)
    ece = 0.0
    for b in range(ECE_BINS):
        inside = bins == b
        if inside.any():
            ece += inside.mean() * abs(float(p[inside].mean()) - float(y[inside].mean()))
    confident = (p >= CONFIDENT) | (p <= 1.0 - CONFIDENT)
    right = np.where(p >= 0.5, y, 1.0 - y)
    return Calibration(
        pairs=int(p.size),
        brier=brier,
        calibration_error=float(ece),
        confident_share=float(confident.mean()),
        confident_accuracy=float(right[confident].mean()) if confident.any() else math.nan,
    )
