"""Shared parts of the built-in cost models: validated parameters and unit conversion, and
the cost-unit check and rates of the source kinds that state a curation cost in compute
(``synthetic``, ``filtered``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import sympy
from pydantic import BaseModel, ConfigDict, Field, field_validator

from plugins.contract import CostModel, PluginConfig, validate_model
from plugins.units import Rates, Unit, convert

COST_UNITS = (Unit.FLOPS, Unit.GPU_HOURS, Unit.USD)
#: the rate parameters a cost model or a kind's configuration may set
RATE_FIELDS = ("flops_per_gpu_hour", "usd_per_gpu_hour")


def check_cost_unit(unit: Unit) -> Unit:
    """A cost is stated in FLOPs, GPU-hours or dollars, never in tokens.

    Raises:
        ValueError: for any other unit (pydantic validators turn it into a field error).
    """
    if unit not in COST_UNITS:
        raise ValueError("cost_unit must be flops, gpu_hours or usd")
    return unit


def rates_or_defaults(
    flops_per_gpu_hour: float | None = None, usd_per_gpu_hour: float | None = None
) -> Rates:
    """Rates with the given figures, :class:`~plugins.units.Rates`' defaults for the rest."""
    base = Rates()
    return Rates(
        flops_per_gpu_hour or base.flops_per_gpu_hour, usd_per_gpu_hour or base.usd_per_gpu_hour
    )


class PricedConfig(PluginConfig):
    """Base of a source kind's configuration that states its curation cost in compute.

    The subclass declares the fields (each with its own description, in its form's order):
    ``cost_unit: Unit``, ``flops_per_gpu_hour: float | None`` and
    ``usd_per_gpu_hour: float | None``. This base checks the unit and turns the rates into
    :class:`~plugins.units.Rates`.
    """

    @field_validator("cost_unit", check_fields=False)
    @classmethod
    def _cost_unit(cls, value: Unit) -> Unit:
        return check_cost_unit(value)

    def rates(self) -> Rates:
        """The configured rates, defaults for those not set."""
        return rates_or_defaults(*(getattr(self, k) for k in RATE_FIELDS))

    def explicit_rates(self) -> dict[str, float]:
        """Only the rates the configuration sets: the planner fills in the project's."""
        return {k: getattr(self, k) for k in RATE_FIELDS if getattr(self, k) is not None}

    def price_flops(self, flops: float) -> float:
        """What ``flops`` of curation compute cost, in the configured ``cost_unit``."""
        return convert(flops, Unit.FLOPS, self.cost_unit, self.rates())  # type: ignore[attr-defined]


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
