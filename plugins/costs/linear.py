"""The ``linear`` cost model: a price per token plus a fixed fee (licensed or bought data)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import sympy
from pydantic import Field

from plugins.costs.base import CostParams, ParamCostModel
from plugins.hookspecs import hookimpl
from plugins.units import Unit


class LinearParams(CostParams):
    per_token: float = Field(ge=0)
    """Cost of one token, in ``unit``."""
    fixed: float = Field(default=0.0, ge=0)
    """A one-off fee, in ``unit`` (a licence, a setup cost)."""
    unit: Unit = Unit.USD
    """The unit of ``per_token`` and ``fixed``: usd, gpu_hours or flops."""


class LinearCost(ParamCostModel):
    """cost(n) = per_token · n + fixed."""

    name = "linear"
    FORMULA = "per_token·n + fixed"
    Params = LinearParams
    params: LinearParams

    @property
    def unit(self) -> Unit:  # type: ignore[override]
        return self.params.unit

    def expr(self, n: sympy.Symbol) -> sympy.Expr:
        p = self.params
        return sympy.Float(p.per_token) * n + sympy.Float(p.fixed)

    def cost(self, tokens: Any) -> Any:
        p = self.params
        return p.per_token * np.asarray(tokens, dtype=float) + p.fixed


@hookimpl
def register_cost_models(register: Callable[[str, Callable[..., Any]], None]) -> None:
    register(LinearCost.name, LinearCost.from_params)
