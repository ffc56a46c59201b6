"""The joint laws (``--method joint``) on synthetic groups whose true law is known.

Each group is one (study, metric) with four sources on a power law in compute, eight
doublings of compute, so F = 0.1 keeps four points per source and x_T is 16× beyond them.
"shared" groups give every source the same asymptote and exponent (rankings never change
with compute); "crossing" groups give each source its own exponent (about 15% apart), so
curves may cross between the fit set and x_T.
"""

from __future__ import annotations

import numpy as np
import pytest

from planner.backtest import run_backtest
from planner.domain import Observation

pytestmark = pytest.mark.slow


def _groups(*, crossing: bool, seeds: int, groups: int = 60, sd: float = 0.02, rng_seed: int = 0):
    rng = np.random.default_rng(rng_seed)
    x = 1e18 * 2.0 ** np.arange(8)
    obs = []
    for g in range(groups):
        E, alpha = rng.uniform(1.5, 3.0), rng.uniform(0.2, 0.5)
        for s in range(4):
            A = rng.uniform(0.5, 1.5)
            a_s = alpha * (1 + 0.15 * rng.standard_normal()) if crossing else alpha
            for c in x:
                mu = E + A * (c / 1e18) ** -a_s
                for _ in range(seeds):
                    value = float(mu + sd * rng.standard_normal())
                    obs.append(Observation(f"g{g}", "loss", f"s{s}", float(c), value))
    return obs


def test_intervals_are_calibrated_with_and_without_seeds():
    """Nominal 90% intervals cover 85–95% of targets, pooled over four settings.

    Before the shape error stopped counting the held-out value's noise a second time (and
    before the backtest fitted the seed means it scores), the seeded settings covered
    97–100%.
    """
    covered = total = 0
    for crossing in (False, True):
        for seeds, fraction in ((1, 0.1), (3, 0.25)):
            res = run_backtest(
                _groups(crossing=crossing, seeds=seeds), fraction=fraction, method="joint", jobs=0
            )
            covered += round(res.interval_coverage * res.intervals)
            total += res.intervals
    assert 0.85 <= covered / total <= 0.95, covered / total


def test_no_false_crossings_from_per_source_lines():
    """A per-source line in log-compute reads level differences as slope differences.

    On a shared power law the higher curve is also the steeper one, so per-source lines
    predict crossings that never come; the default's crossing form (shared asymptote,
    per-source exponent) does not, and where curves really cross the default orders at
    least as many pairs as the earlier default that averaged in per-source lines (3–6
    points more on four other draws of these groups, 0.6 on this one).
    """
    shared = _groups(crossing=False, seeds=1)
    line = run_backtest(shared, fraction=0.1, method="loglinear", jobs=0)
    assert line.decision_accuracy < line.point_estimate_decision_accuracy - 0.2
    crossing = _groups(crossing=True, seeds=1)
    default = run_backtest(crossing, fraction=0.1, method="joint", jobs=0)
    earlier = run_backtest(crossing, fraction=0.1, method="joint-line", jobs=0)
    assert default.decision_accuracy >= earlier.decision_accuracy
    assert default.decision_accuracy >= default.point_estimate_decision_accuracy - 0.02
