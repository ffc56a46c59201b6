"""The ``generation`` cost model: the compute a generator model spends writing the tokens.

A decoder forward pass costs about 2·N FLOPs per token processed, and generating a token
means processing its prompt share too: cost(n) = 2·N_gen·(1 + r)·g·n FLOPs, where r is
the prompt tokens per output token and g the generator tokens per delivered token (the
generator's and the trained model's tokenizers differ, and some output is thrown away).
Optionally converted to GPU-hours or dollars through planner.units.Rates.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import sympy
from pydantic import Field

from plugins.costs.base import COST_UNITS, ParamCostModel, RateParams, flops_factor
from plugins.hookspecs import hookimpl
from plugins.units import Unit


class GenerationParams(RateParams):
    generator_params: float = Field(gt=0)
    """N_gen: the generator's parameter count."""
    prompt_tokens_per_output_token: float = Field(default=1.0, ge=0)
    """r: prompt tokens processed per generated token (seed document + instructions)."""
    generator_tokens_per_token: float = Field(default=1.0, gt=0)
    """g: generator output tokens per delivered (trained-tokenizer) token, waste included."""
    fixed: float = Field(default=0.0, ge=0)
    """A one-off cost in ``unit`` (e.g. loading and warming up the generator)."""
    unit: Unit = Unit.FLOPS
    """The unit of the result: flops, gpu_hours or usd."""


class GenerationCost(ParamCostModel):
    """cost(n) = 2·N_gen·(1 + r)·g·n FLOPs (converted to ``unit``) + fixed."""

    name = "generation"
    FORMULA = "2·generator_params·(1 + prompt_tokens_per_output_token)·generator_tokens_per_token·n FLOPs → unit, + fixed"
    Params = GenerationParams
    params: GenerationParams

    def __init__(self, params: GenerationParams) -> None:
        if params.unit not in COST_UNITS:
            from plugins.errors import ConfigError

            raise ConfigError("cost model 'generation': unit must be flops, gpu_hours or usd")
        super().__init__(params)

    @property
    def unit(self) -> Unit:  # type: ignore[override]
        return self.params.unit

    @property
    def flops_per_token(self) -> float:
        p = self.params
        return (
            2.0
            * p.generator_params
            * (1.0 + p.prompt_tokens_per_output_token)
            * (p.generator_tokens_per_token)
        )

    def expr(self, n: sympy.Symbol) -> sympy.Expr:
        p = self.params
        N, r, g = (
            sympy.Float(v)
            for v in (
                p.generator_params,
                p.prompt_tokens_per_output_token,
                p.generator_tokens_per_token,
            )
        )
        k = sympy.Float(flops_factor(p.unit, p.rates))
        return 2 * N * (1 + r) * g * n * k + sympy.Float(p.fixed)

    def cost(self, tokens: Any) -> Any:
        p = self.params
        flops = self.flops_per_token * np.asarray(tokens, dtype=float)
        return flops * flops_factor(p.unit, p.rates) + p.fixed


@hookimpl
def register_cost_models(register: Callable[[str, Callable[..., Any]], None]) -> None:
    register(GenerationCost.name, GenerationCost.from_params)
