"""What ``annealplan sources`` and the TUI's Sources screen both do with a source.

- :func:`build_source`: validate a new source through its plugin kind: configuration, the
  curation cost model (the kind's default or a named one, with the project's rates) and
  the availability cap.
- :func:`quote_cost`: the curation cost of a token count of a stored source, with its
  formula, optionally converted with the project's rates.
- :func:`load_tokenizer`: a local tokenizer folder, to count a cap or materialise exactly.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from planner.domain import CostSpec, Source
from planner.errors import ConfigError, executor_extra
from planner.units import Rates, Unit, convert


def absolute_paths(config: dict[str, Any], fields: Sequence[str]) -> dict[str, Any]:
    """Make the path (or glob) fields absolute against the current directory."""

    def fix(value: Any) -> Any:
        if isinstance(value, str):
            return os.path.abspath(os.path.expanduser(value))
        if isinstance(value, list):
            return [fix(v) for v in value]
        return value

    return {k: fix(v) if k in fields else v for k, v in config.items()}


def load_tokenizer(path: str | None) -> Any:
    """The tokenizer saved in a local folder (None: no tokenizer).

    Raises:
        ConfigError: it cannot be loaded, or transformers is not installed (naming the
            extra that brings it).
    """
    if path is None:
        return None
    with executor_extra(f"loading the tokenizer {path!r}"):
        from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as e:
        raise ConfigError(f"cannot load a tokenizer from {path!r}: {e}; give a local folder") from e


def _fill_rates(factory: Any, params: dict[str, Any], rates: Rates) -> dict[str, Any]:
    """Give a cost model that converts compute to money the project's rates, unless set."""
    model_cls = getattr(factory, "__self__", None)
    fields = getattr(getattr(model_cls, "Params", None), "model_fields", {})
    for key in ("flops_per_gpu_hour", "usd_per_gpu_hour"):
        if key in fields and key not in params:
            params[key] = getattr(rates, key)
    return params


def build_source(
    registry: Any,
    rates: Rates,
    *,
    kind_name: str,
    name: str,
    raw_config: Mapping[str, Any],
    cost_model: str | None = None,
    cost_params: Mapping[str, Any] | None = None,
    tokenizer: Any = None,
    description: str = "",
) -> Source:
    """Validate a new source: kind, configuration, cost model and cap.

    Args:
        registry: the plugin registry (source kinds, cost models).
        rates: the project's rates, given to cost models that convert compute to money
            unless the parameters set them.
        kind_name: the source kind.
        name: the source's name.
        raw_config: the kind's configuration (path fields are made absolute).
        cost_model, cost_params: a registered cost model and its parameters (default: the
            kind's own, with these parameters over its defaults).
        tokenizer: counts the cap exactly (None: the kind may estimate it).
        description: one line for people (default: the kind's).

    Raises:
        PluginError: unknown kind or cost model (with suggestions).
        ConfigError: invalid configuration or cost parameters, field by field.
    """
    kind = registry.source_kind(kind_name)
    config = kind.parse_config(raw_config)
    if config.path_fields:
        config = kind.parse_config(absolute_paths(config.model_dump(), config.path_fields))
    choice = kind.default_cost(config)
    if cost_model is None and choice is not None:
        model_name, params = choice.model, {**choice.params, **(cost_params or {})}
    elif cost_model is not None:
        model_name, params = cost_model, dict(cost_params or {})
    else:
        if cost_params:
            raise ConfigError(
                f"kind {kind_name!r} has no default cost model; name one with --cost-model "
                "(e.g. --cost-model linear --cost per_token=1e-6)"
            )
        model_name, params = None, {}
    cost = None
    if model_name is not None:
        factory = registry.cost_model_factory(model_name)
        params = _fill_rates(factory, dict(params), rates)
        model = registry.build_cost_model(model_name, params)
        canonical = model.to_params() if hasattr(model, "to_params") else params
        cost = CostSpec(model_name, dict(canonical), model.unit)
    owner = registry.owner("source_kind", kind_name)
    return Source(
        name=name,
        kind=kind_name,
        config=config.model_dump(mode="json"),
        cost=cost,
        cap_tokens=kind.cap_tokens(config, tokenizer),
        plugin=owner.name if owner else "",
        plugin_version=owner.version if owner else "",
        description=description or kind.description,
    )


@dataclass(frozen=True, slots=True)
class CostQuote:
    """The curation cost of some tokens of a source (training excluded).

    Attributes:
        source: the source's name.
        tokens: the token count priced.
        cost: what curating them costs, in ``unit``.
        unit: the cost's unit.
        marginal_cost_per_token: dCost/dtokens at ``tokens``, in ``unit``.
        formula: the cost model's formula for people ("free (no cost model)" when none).
        cap_tokens: the source's cap (None: unbounded).
        exceeds_cap: more tokens than the source holds.
        free: the source has no cost model (curation costs nothing).
    """

    source: str
    tokens: float
    cost: float
    unit: Unit
    marginal_cost_per_token: float
    formula: str
    cap_tokens: float | None
    exceeds_cap: bool
    free: bool = False


def quote_cost(
    source: Source, registry: Any, tokens: float, *, unit: Unit | None = None, rates: Rates
) -> CostQuote:
    """Price ``tokens`` tokens of ``source`` through its cost model.

    Args:
        source: the stored source.
        registry: the plugin registry (its cost models).
        tokens: how many tokens.
        unit: convert the cost to this unit with ``rates`` (None: the model's own unit;
            USD for a free source).
        rates: the project's rates.
    """
    import sympy

    model = registry.cost_model_for(source)
    exceeds = source.cap_tokens is not None and tokens > source.cap_tokens
    if model is None:
        value, marginal, src_unit, formula = 0.0, 0.0, unit or Unit.USD, "free (no cost model)"
    else:
        n = sympy.Symbol("n", nonnegative=True)
        value = float(model.cost(tokens))
        marginal = float(sympy.diff(model.expr(n), n).subs(n, tokens))
        src_unit, formula = model.unit, model.describe()
    out_unit = unit or src_unit
    if out_unit is not src_unit and model is not None:
        value = convert(value, src_unit, out_unit, rates)
        marginal = convert(marginal, src_unit, out_unit, rates)
    return CostQuote(
        source=source.name,
        tokens=tokens,
        cost=value,
        unit=out_unit,
        marginal_cost_per_token=marginal,
        formula=formula,
        cap_tokens=source.cap_tokens,
        exceeds_cap=exceeds,
        free=model is None,
    )
