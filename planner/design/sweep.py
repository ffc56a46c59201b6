"""Sweep design: which annealing runs to do first, and what they cost.

Every source gets runs on one geometric token grid spanning at least a decade (the same grid
for all sources, so their laws are compared over the same range; a source's supply cap clips
its grid), repeated for each seed, plus the control anneal (replay only) at the grid's middle
size per seed. With one seed, each source's largest budget is also run with a second seed by
default (``repeat_top``): the fits then measure the noise a retraining adds (the seed spread
in :mod:`planner.laws.noise`) from the sweep itself, where the law matters most for
extrapolation, for one run per source. The grid's scale is chosen by bisection so the whole sweep costs ``fraction``
of the target budget. Job ids are deterministic (:func:`planner.domain.stable_id` of source,
tokens, replay share, seed and model size) so designing again reuses the same jobs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import sympy

from planner.allocate.model import N_TOKENS
from planner.allocate.problem import CostSetup, cost_expr
from planner.domain import AnnealSpec, stable_id
from planner.errors import SolveError


@dataclass(frozen=True, slots=True)
class DesignSource:
    """A source to sweep: its name, curation cost model (or None) and cap."""

    name: str
    curation: object | None = None
    cap_tokens: float | None = None


@dataclass(frozen=True)
class Design:
    """A designed sweep.

    Attributes:
        specs: the runs (control runs have ``source=None``).
        cost: total cost in ``unit``; ``run_costs`` per job id.
        grid: the token grid (before caps).
        meta: JSON-able description stored with the experiment.
    """

    specs: tuple[AnnealSpec, ...]
    cost: float
    run_costs: dict[str, float]
    grid: tuple[float, ...]
    meta: dict = field(default_factory=dict)


def round3(x: float) -> float:
    """``x`` to three significant digits (token counts people read and job ids share)."""
    return float(f"{x:.3g}")


def design_sweep(
    sources: Sequence[DesignSource],
    setup: CostSetup,
    budget: float,
    *,
    fraction: float = 0.05,
    points: int = 4,
    seeds: int = 1,
    span: float = 10.0,
    replay_fraction: float = 0.7,
    eval_cost: float = 0.0,
    experiment: str = "sweep",
    repeat_top: bool = True,
) -> Design:
    """Design a sweep that costs ``fraction × budget``.

    Args:
        sources: the sources to sweep.
        setup: costs (unit, model size, rates).
        budget: the target budget in ``setup.unit``.
        fraction: share of the budget spent on the sweep.
        points: token budgets per source (≥ 2).
        seeds: repeats of every run.
        span: largest / smallest tokens of the grid (≥ 10: at least a decade).
        replay_fraction: replay share of every run's training tokens.
        eval_cost: evaluation cost of one run, in ``setup.unit``.
        experiment: the experiment's name.
        repeat_top: with ``seeds == 1``, run each source's largest budget with a second
            seed too (the sweep's own measure of seed noise). No effect with more seeds.

    Raises:
        SolveError: bad arguments, or the sweep budget cannot pay for the evaluations alone.
    """
    _check_arguments(sources, points, seeds, fraction, replay_fraction)
    span = max(float(span), 10.0)
    rel = span ** (np.arange(points) / (points - 1)) / span  # largest point = 1
    prices = _Prices.of(sources, setup, replay_fraction)
    mid = float(np.sqrt(rel[0] * rel[-1]))
    caps = [np.inf if s.cap_tokens is None else float(s.cap_tokens) for s in sources]
    repeat = repeat_top and seeds == 1
    n_runs = seeds * (len(sources) * points + 1) + (len(sources) if repeat else 0)
    target = fraction * budget - n_runs * eval_cost - sum(prices.fixed)
    if target <= 0:
        raise SolveError(
            f"the sweep budget ({fraction:g} × {budget:g}) does not cover {n_runs} evaluations "
            "and the sources' fixed curation costs; "
            "raise --fraction or the budget, or use fewer --points/--seeds"
        )
    top = _largest_within(
        lambda top: prices.sweep(
            _grid_rows(top, rel, caps), top * mid / (1 - replay_fraction), seeds, repeat
        ),
        target,
    )
    specs, run_costs = _specs(
        sources,
        prices,
        _grid_rows(top, rel, caps),
        round3(top * mid / (1 - replay_fraction)),
        setup=setup,
        seeds=seeds,
        repeat_top=repeat,
        replay_fraction=replay_fraction,
        eval_cost=eval_cost,
        experiment=experiment,
    )
    cost = float(sum(run_costs.values()) + sum(prices.fixed))
    grid = tuple(round3(top * r) for r in rel)
    meta = {
        "budget": budget,
        "unit": setup.unit.value,
        "fraction": fraction,
        "points": points,
        "seeds": seeds,
        "repeat_top": repeat,
        "span": span,
        "replay_fraction": replay_fraction,
        "model_params": setup.model_params,
        "eval_cost": eval_cost,
        "grid_tokens": list(grid),
        "cost": cost,
        "fixed_costs": {s.name: f for s, f in zip(sources, prices.fixed, strict=True) if f},
        "sources": [s.name for s in sources],
    }
    return Design(tuple(specs), cost, run_costs, grid, meta)


def _check_arguments(
    sources: Sequence[DesignSource], points: int, seeds: int, fraction: float, replay: float
) -> None:
    """Raise :class:`SolveError` for a sweep that cannot be designed as asked."""
    if not sources:
        raise SolveError("no sources to sweep; add some with `annealplan sources add`")
    if points < 2:
        raise SolveError("--points must be at least 2 (a law needs several budgets per source)")
    if seeds < 1:
        raise SolveError("--seeds must be at least 1")
    if not 0 < fraction <= 1:
        raise SolveError("--fraction must be in (0, 1], e.g. 0.05 for 5% of the budget")
    if not 0 <= replay < 1:
        raise SolveError("the replay fraction must be in [0, 1)")


@dataclass(frozen=True)
class _Prices:
    """What the runs cost, in the budget's unit.

    Attributes:
        fixed: per source, its curation model's fixed part (a licence, a set-up), paid once
            per source, not per run.
        runs: per source, the cost of one run of ``n`` source tokens without the fixed part.
        control: the cost of a control run of ``n`` tokens (replay only: all training).
    """

    fixed: list[float]
    runs: list[Callable[[float], float]]
    control: Callable[[float], float]

    @classmethod
    def of(cls, sources: Sequence[DesignSource], setup: CostSetup, replay: float) -> _Prices:
        run_setup = replace(setup, replay_fraction=replay)
        exprs = [cost_expr(N_TOKENS, s.curation, run_setup) for s in sources]
        fixed = [float(e.subs(N_TOKENS, 0)) for e in exprs]
        runs = [sympy.lambdify(N_TOKENS, e - f) for e, f in zip(exprs, fixed, strict=True)]
        control = sympy.lambdify(
            N_TOKENS, cost_expr(N_TOKENS, None, replace(setup, replay_fraction=0.0))
        )
        return cls(fixed, runs, control)

    def sweep(
        self,
        rows: Sequence[Sequence[float]],
        control_tokens: float,
        seeds: int,
        repeat_top: bool = False,
    ) -> float:
        """What a sweep costs (fixed parts aside): every source's grid ``rows`` and the
        control, once per seed, plus each row's largest run again with ``repeat_top``."""
        c = sum(float(fn(t)) for fn, row in zip(self.runs, rows, strict=True) for t in row)
        c += float(self.control(control_tokens))
        extra = sum(float(fn(max(row))) for fn, row in zip(self.runs, rows, strict=True))
        return seeds * c + (extra if repeat_top else 0.0)


def _largest_within(cost: Callable[[float], float], target: float) -> float:
    """The largest grid scale whose sweep ``cost`` stays within ``target`` (bisection in log
    space between 1 and 1e30 tokens)."""
    lo, hi = 1.0, 1e30
    for _ in range(200):
        m = np.sqrt(lo * hi)
        lo, hi = (m, hi) if cost(m) <= target else (lo, m)
    return lo


def _grid_rows(top: float, rel: np.ndarray, caps: Sequence[float]) -> list[list[float]]:
    """Per source, the grid's tokens scaled to ``top``, clipped at the source's cap."""
    return [[min(top * r, cap) for r in rel] for cap in caps]


def _specs(
    sources: Sequence[DesignSource],
    prices: _Prices,
    rows: Sequence[Sequence[float]],
    control_tokens: float,
    *,
    setup: CostSetup,
    seeds: int,
    repeat_top: bool,
    replay_fraction: float,
    eval_cost: float,
    experiment: str,
) -> tuple[list[AnnealSpec], dict[str, float]]:
    """Every run of every seed (the sources' grids, then the control), each source's
    largest run with seed 1 when ``repeat_top``, and each one's cost."""
    specs: list[AnnealSpec] = []
    run_costs: dict[str, float] = {}
    for seed in range(seeds):
        for s, fn, row in zip(sources, prices.runs, rows, strict=True):
            for t in dict.fromkeys(round3(t) for t in row):  # a cap can merge points
                jid = stable_id("job", s.name, t, replay_fraction, seed, setup.model_params)
                specs.append(AnnealSpec(jid, experiment, s.name, t, replay_fraction, seed))
                run_costs[jid] = float(fn(t)) + eval_cost
        jid = stable_id("job", None, control_tokens, 1.0, seed, setup.model_params)
        specs.append(AnnealSpec(jid, experiment, None, control_tokens, 1.0, seed))
        run_costs[jid] = float(prices.control(control_tokens)) + eval_cost
    if repeat_top:
        for s, fn, row in zip(sources, prices.runs, rows, strict=True):
            t = round3(max(row))
            jid = stable_id("job", s.name, t, replay_fraction, 1, setup.model_params)
            specs.append(AnnealSpec(jid, experiment, s.name, t, replay_fraction, 1))
            run_costs[jid] = float(fn(t)) + eval_cost
    return specs, run_costs
