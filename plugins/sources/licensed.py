"""The ``licensed`` kind: bought or in-house data at a price per token, with a hard cap.

The data itself comes from local files (as in ``files``); what differs is the price
(``linear`` cost: price per token plus a fixed fee) and the contractual cap.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import Field

from plugins.contract import CostChoice, CurationCost, Materialized, PluginConfig, Tokenizer
from plugins.hookspecs import hookimpl
from plugins.sources.files import FilesConfig, FilesKind
from plugins.sources.packing import pool_too_small


class LicensedConfig(FilesConfig):
    """Configuration of the ``licensed`` kind (the ``files`` fields plus the terms)."""

    usd_per_token: float = Field(ge=0)
    """The price of one token."""
    fixed_fee_usd: float = Field(default=0.0, ge=0)
    """A one-off licence fee."""
    max_tokens: float = Field(gt=0)
    """The most tokens the licence allows (a hard cap, whatever the files hold)."""


class LicensedKind(FilesKind):
    """Licensed data from local files, priced per token, with a hard cap."""

    name = "licensed"
    description = "licensed or in-house data: price per token + fixed fee, hard cap; local files"
    Config = LicensedConfig

    def default_cost(self, config: PluginConfig) -> CostChoice | None:
        assert isinstance(config, LicensedConfig)
        return CostChoice(
            "linear",
            {"per_token": config.usd_per_token, "fixed": config.fixed_fee_usd, "unit": "usd"},
        )

    def cap_tokens(self, config: PluginConfig, tokenizer: Tokenizer | None = None) -> float | None:
        assert isinstance(config, LicensedConfig)
        available = super().cap_tokens(config, tokenizer) or 0.0
        return float(min(available, config.max_tokens))

    def curation(self, config: PluginConfig, tokens: int, seconds: float) -> CurationCost:
        assert isinstance(config, LicensedConfig)
        usd = config.fixed_fee_usd + config.usd_per_token * tokens
        return CurationCost(
            cost=usd,
            unit="usd",
            seconds=seconds,
            details={"usd_per_token": config.usd_per_token, "fixed_fee_usd": config.fixed_fee_usd},
        )

    def materialize(
        self, config: PluginConfig, tokens: int, dest: Path, seed: int, tokenizer: Tokenizer
    ) -> Materialized:
        assert isinstance(config, LicensedConfig)
        if tokens > config.max_tokens:
            raise pool_too_small(
                f"the licensed source over {', '.join(config.paths)}",
                int(config.max_tokens),
                tokens,
                reason="the licence's max_tokens",
            )
        return super().materialize(config, tokens, dest, seed, tokenizer)


@hookimpl
def register_source_kinds(register: Callable[[Any], None]) -> None:
    register(LicensedKind())
