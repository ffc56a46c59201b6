"""The ``filtering`` cost model: scoring a pool with a quality classifier, keeping the best.

To keep n tokens at threshold θ the classifier must scan n / keep(θ) tokens, where keep(θ)
is the share of the pool's tokens scoring at least θ: either measured (``keep_rate``) or
from the curve keep(θ) = (1 − θ)^s (s = 1 when scores are spread evenly; larger s when good
documents are rare). The cost per kept token, c / keep(θ), grows as the threshold tightens.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import sympy
from pydantic import Field

from plugins.costs.base import COST_UNITS, ParamCostModel, RateParams
from plugins.errors import ConfigError
from plugins.hookspecs import hookimpl
from plugins.units import Unit, convert


class FilteringParams(RateParams):
    scan_cost_per_token: float = Field(gt=0)
    """c: what scoring one pool token costs, in ``scan_unit`` (2·N_classifier FLOPs)."""
    scan_unit: Unit = Unit.FLOPS
    """The unit of ``scan_cost_per_token``."""
    threshold: float = Field(default=0.5, ge=0, lt=1)
    """θ: the classifier score a document needs to be kept."""
    keep_rate: float | None = Field(default=None, gt=0, le=1)
    """Measured share of pool tokens kept at θ; None: use the curve (1 − θ)^s."""
    sharpness: float = Field(default=1.0, ge=0)
    """s: how fast the keep rate falls as θ tightens (used when keep_rate is None)."""
    fixed: float = Field(default=0.0, ge=0)
    """A one-off cost in ``unit`` (e.g. training the classifier)."""
    unit: Unit | None = None
    """The unit of the result (default: ``scan_unit``)."""


class FilteringCost(ParamCostModel):
    """cost(n) = c · n / keep(θ) (converted to ``unit``) + fixed."""

    name = "filtering"
    FORMULA = "scan_cost_per_token·n / keep(threshold), keep = keep_rate or (1 − threshold)^sharpness, → unit, + fixed"
    Params = FilteringParams
    params: FilteringParams

    def __init__(self, params: FilteringParams) -> None:
        for u in (params.scan_unit, params.unit or params.scan_unit):
            if u not in COST_UNITS:
                raise ConfigError("cost model 'filtering': units must be flops, gpu_hours or usd")
        super().__init__(params)

    @property
    def unit(self) -> Unit:  # type: ignore[override]
        return self.params.unit or self.params.scan_unit

    def keep_rate(self, threshold: float | None = None) -> float:
        """keep(θ): the measured rate at the configured θ, else the curve (1 − θ)^s."""
        p = self.params
        theta = p.threshold if threshold is None else threshold
        if p.keep_rate is not None and threshold is None:
            return p.keep_rate
        return float((1.0 - theta) ** p.sharpness)

    def scanned_per_kept(self, threshold: float | None = None) -> float:
        """Tokens scanned per token kept, 1 / keep(θ)."""
        return 1.0 / self.keep_rate(threshold)

    def _factor(self) -> float:
        p = self.params
        return convert(p.scan_cost_per_token, p.scan_unit, self.unit, p.rates)

    def expr(self, n: sympy.Symbol) -> sympy.Expr:
        p = self.params
        if p.keep_rate is not None:
            keep: sympy.Expr = sympy.Float(p.keep_rate)
        else:
            keep = (1 - sympy.Float(p.threshold)) ** sympy.Float(p.sharpness)
        return sympy.Float(self._factor()) * n / keep + sympy.Float(p.fixed)

    def cost(self, tokens: Any) -> Any:
        n = np.asarray(tokens, dtype=float)
        return self._factor() * n * self.scanned_per_kept() + self.params.fixed


@hookimpl
def register_cost_models(register: Callable[[str, Callable[..., Any]], None]) -> None:
    register(FilteringCost.name, FilteringCost.from_params)
