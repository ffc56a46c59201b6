"""A check of each metric's direction against its data.

The direction of a metric comes from its name (``planner.domain.lower_is_better``) or from
``--lower-is-better/--higher-is-better``. A name outside the rule (``bits_per_byte``,
``nll``…) is taken as higher-is-better, and a law fitted the wrong way round is bounded to
run against the data. Training more improves a metric on the whole, so a metric that gets
*worse* with compute in most sources is more likely named outside the rule than really
getting worse; :func:`direction_conflicts` finds those so the commands can say so. It only
warns: the direction used is still the rule's or the override's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from planner.domain import Observation, lower_is_better

#: a source's trend counts when its rank correlation with compute is at least this strong
CLEAR_TREND = 0.5
#: a metric conflicts when a sign test says this unlikely for a metric that only wanders
SIGN_TEST_P = 0.01


@dataclass(frozen=True, slots=True)
class DirectionConflict:
    """A metric whose data run against its direction in most sources with a clear trend."""

    metric: str
    lower_is_better: bool
    against: int  #: sources whose trend runs against the direction
    clear: int  #: sources with a clear trend either way

    def message(self) -> str:
        taken = "lower" if self.lower_is_better else "higher"
        moves = "rises" if self.lower_is_better else "falls"
        flag = "--higher-is-better" if self.lower_is_better else "--lower-is-better"
        return (
            f"metric {self.metric!r} is taken as {taken}-is-better, but it {moves} with "
            f"compute in {self.against} of the {self.clear} sources with a clear trend; if "
            f"{'higher' if self.lower_is_better else 'lower'} is better, pass "
            f"{flag} {self.metric}"
        )


def direction_conflicts(
    observations: Sequence[Observation], overrides: Mapping[str, bool] | None = None
) -> list[DirectionConflict]:
    """Metrics whose values move against their direction in most sources.

    A source's trend is the Spearman correlation of its (seed-averaged) values with compute,
    over at least 3 distinct computes, counted when it is at least :data:`CLEAR_TREND` in
    size. A metric conflicts when more of those trends run against its direction than a
    metric near chance would give by luck: a one-sided sign test below :data:`SIGN_TEST_P`
    (7 of 7, 10 of 11, 13 of 15…). Metrics given in ``overrides`` are the user's word and
    are not checked.
    """
    series: dict[str, dict[tuple[str, str], dict[float, list[float]]]] = {}
    for o in observations:
        if overrides and o.metric in overrides:
            continue
        by_source = series.setdefault(o.metric, {}).setdefault((o.study, o.source), {})
        by_source.setdefault(float(o.compute), []).append(float(o.value))
    out = []
    for metric, by_source in sorted(series.items()):
        lower = lower_is_better(metric)
        against = clear = 0
        for points in by_source.values():
            if len(points) < 3:
                continue
            x = np.array(sorted(points))
            y = np.array([np.mean(points[c]) for c in x])
            if np.ptp(y) == 0:
                continue
            rho = float(stats.spearmanr(x, y).statistic)
            if abs(rho) >= CLEAR_TREND:
                clear += 1
                against += int((rho > 0) == lower)
        if clear and stats.binomtest(against, clear, 0.5, "greater").pvalue < SIGN_TEST_P:
            out.append(DirectionConflict(metric, lower, against, clear))
    return out
