"""Small, self-contained law families and fits for tests, benchmarks and simulations.

They follow the :class:`plugins.contract.LawFamily` contract (a sympy expression in the scaled
compute ``x``) so the allocation and design code can be exercised without the fitting room.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import sympy

from planner.domain import LawFit
from plugins.contract import LawFamily

_x = sympy.Symbol("x", positive=True)


def saturating_power() -> LawFamily:
    """``E − A·x^−alpha``: an accuracy rising to E (higher is better)."""
    E, A, alpha = sympy.symbols("E A alpha", real=True)
    return LawFamily(
        name="t_power",
        expr=E - A * _x ** (-alpha),
        x=_x,
        params=(E, A, alpha),
        bounds=((-10, 10), (0, 10), (0.01, 3)),
        start_grid=[[0.5, 0.1, 0.3]],
    )


def loss_power() -> LawFamily:
    """``E + A·x^−alpha``: a loss falling to E (lower is better)."""
    E, A, alpha = sympy.symbols("E A alpha", real=True)
    return LawFamily(
        name="t_loss",
        expr=E + A * _x ** (-alpha),
        x=_x,
        params=(E, A, alpha),
        bounds=((0, 10), (0, 10), (0.01, 3)),
        start_grid=[[2.0, 1.0, 0.3]],
    )


def logistic_log() -> LawFamily:
    """``lo + (hi − lo) / (1 + exp(−k·(log x − m)))``: a sigmoid in log compute."""
    lo, hi, k, m = sympy.symbols("lo hi k m", real=True)
    return LawFamily(
        name="t_logistic",
        expr=lo + (hi - lo) / (1 + sympy.exp(-k * (sympy.log(_x) - m))),
        x=_x,
        params=(lo, hi, k, m),
        bounds=((0, 1), (0, 1), (0.01, 20), (-20, 20)),
        start_grid=[[0.2, 0.8, 2.0, 0.0]],
    )


def loglinear() -> LawFamily:
    """``a + b·log x``."""
    a, b = sympy.symbols("a b", real=True)
    return LawFamily(
        name="t_loglinear",
        expr=a + b * sympy.log(_x),
        x=_x,
        params=(a, b),
        bounds=((-10, 10), (-10, 10)),
        start_grid=[[0.0, 0.1]],
    )


def families() -> dict[str, LawFamily]:
    """All the test families by name."""
    return {f.name: f for f in (saturating_power(), loss_power(), logistic_log(), loglinear())}


def make_fit(
    source: str,
    family: LawFamily,
    params: Mapping[str, float],
    *,
    metric: str = "acc",
    x_ref: float = 1e9,
    boot: np.ndarray | None = None,
    lower_is_better: bool = False,
    x_max: float = float("nan"),
) -> LawFit:
    """A :class:`LawFit` with the given parameters (and optional bootstrap rows)."""
    return LawFit(
        study="default",
        metric=metric,
        source=source,
        family=family.name,
        method="synthetic",
        params={p: float(params[p]) for p in family.param_names},
        x_ref=x_ref,
        boot=boot,
        lower_is_better=lower_is_better,
        x_max=x_max,
        n_points=0,
    )
