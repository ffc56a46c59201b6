"""Shared parts of the built-in cost models: validated parameters and unit conversion."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import sympy
from pydantic import BaseModel, ConfigDict, Field

from plugins.contract import CostModel, validate_model
from plugins.units import Rates, Unit, convert

COST_UNITS = (Unit.FLOPS, Unit.GPU_HOURS, Unit.USD)


class CostParams(BaseModel):
    """Base of a cost model's parameters: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class RateParams(CostParams):
    """Parameters of models that convert compute into GPU-hours or dollars."""

    flops_per_gpu_hour: float = Field(default_factory=lambda: Rates().flops_per_gpu_hour, gt=0)
    """Useful FLOPs one GPU delivers per hour (peak × MFU × 3600)."""
    usd_per_gpu_hour: float = Field(default_factory=lambda: Rates().usd_per_gpu_hour, gt=0)
    """Price of one GPU-hour in USD."""

    @property
    def rates(self) -> Rates:
        return Rates(self.flops_per_gpu_hour, self.usd_per_gpu_hour)


class ParamCostModel(CostModel):
    """A cost model built from validated parameters (``factory(**params)``)."""

    #: the registered name
    name: ClassVar[str]
    Params: ClassVar[type[CostParams]]
    #: the formula for people, in the parameter names
    FORMULA: ClassVar[str] = ""

    def __init__(self, params: CostParams) -> None:
        self.params = params

    @classmethod
    def from_params(cls, **raw: Any) -> ParamCostModel:
        """The factory registered through ``register_cost_models``.

        Raises:
            ConfigError: invalid parameters, field by field.
        """
        return cls(validate_model(cls.Params, raw, what=f"parameters of cost model {cls.name!r}"))

    def to_params(self) -> Mapping[str, Any]:
        """The JSON-able parameters that rebuild this model."""
        return self.params.model_dump(mode="json")

    def describe(self) -> str:
        """The formula in words and symbols, its parameters, and the expression in n."""
        n = sympy.Symbol("n")
        params = ", ".join(f"{k}={v}" for k, v in self.to_params().items() if v is not None)
        return f"{self.FORMULA} ({params}) = {sympy.sstr(self.expr(n))} [{self.unit.value}]"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.to_params()})"


def flops_factor(unit: Unit, rates: Rates) -> float:
    """How many ``unit`` one FLOP is worth (through GPU-hours, see planner.units)."""
    return convert(1.0, Unit.FLOPS, unit, rates)


def symbol(n: sympy.Symbol | None = None) -> sympy.Symbol:
    return n if n is not None else sympy.Symbol("n", nonnegative=True)
