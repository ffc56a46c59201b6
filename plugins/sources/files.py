"""The ``files`` kind: documents from local JSONL, JSON, Parquet or text files.

Documents are read in a deterministic order, exact duplicates removed, then used in an order
fixed by the seed (a permutation, without replacement). The cap is the tokens the
deduplicated pool holds (exact with a tokenizer, else estimated from characters).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pydantic import Field

from plugins.contract import CurationCost, Materialized, PluginConfig, SourceKind, Tokenizer
from plugins.hookspecs import hookimpl
from plugins.sources.documents import StrList, TextSplit, read_documents, seeded_order
from plugins.sources.packing import count_tokens, pack_documents, write_shards


class PoolConfig(PluginConfig):
    """Fields shared by kinds that draw documents from a local pool."""

    text_field: str = "text"
    """The JSON field or Parquet/dataset column that holds the text."""
    min_chars: int = Field(default=1, ge=0)
    """Drop documents shorter than this (after stripping whitespace)."""
    dedup: bool = True
    """Drop exact duplicate documents, keeping the first."""
    chars_per_token: float = Field(default=4.0, gt=0)
    """Used only to estimate the cap when no tokenizer is at hand."""


class FilesConfig(PoolConfig):
    """Configuration of the ``files`` kind."""

    path_fields = ("paths",)

    paths: StrList = Field(min_length=1)
    """Files or globs (``data/**/*.jsonl``): .jsonl/.ndjson/.json, .parquet, or plain text."""
    split: TextSplit = "file"
    """Plain-text files: one document per file, paragraph (blank line) or line."""


def estimate_tokens(docs: Sequence[str], chars_per_token: float) -> int:
    """A tokenizer-free estimate: characters / chars_per_token, plus one EOS per document."""
    return math.ceil(sum(len(d) for d in docs) / chars_per_token) + len(docs)


class FilesKind(SourceKind):
    """Local documents, sampled in a seeded order without replacement."""

    name = "files"
    description = (
        "local JSONL/Parquet/text files: seeded sampling, exact-duplicate removal; "
        "cap = the pool's tokens"
    )
    Config = FilesConfig

    def documents(self, config: Any) -> list[str]:
        """The deduplicated pool, in file order."""
        assert isinstance(config, FilesConfig)
        return read_documents(
            config.paths,
            text_field=config.text_field,
            split=config.split,
            min_chars=config.min_chars,
            dedup=config.dedup,
        )

    def cap_tokens(self, config: PluginConfig, tokenizer: Tokenizer | None = None) -> float | None:
        assert isinstance(config, PoolConfig)
        docs = self.documents(config)
        if tokenizer is None:
            return float(estimate_tokens(docs, config.chars_per_token))
        return float(count_tokens(tokenizer, docs))

    def curation(self, config: PluginConfig, tokens: int, seconds: float) -> CurationCost:
        """What curation spent (nothing for local files: only the seconds it took)."""
        return CurationCost(cost=0.0, unit="usd", seconds=seconds)

    def materialize(
        self, config: PluginConfig, tokens: int, dest: Path, seed: int, tokenizer: Tokenizer
    ) -> Materialized:
        assert isinstance(config, PoolConfig)
        start = time.perf_counter()
        docs = self.documents(config)
        order = seeded_order(len(docs), seed)
        packed = pack_documents(
            (docs[i] for i in order), tokens=tokens, tokenizer=tokenizer, what=self._what(config)
        )
        curation = self.curation(config, tokens, time.perf_counter() - start)
        return write_shards(
            packed.ids,
            dest,
            documents_used=packed.documents_used,
            curation=curation,
            kind=self.name,
            seed=seed,
            tokenizer=tokenizer,
            config=config.model_dump(mode="json"),
            extra={"pool_documents": len(docs)},
        )

    def _what(self, config: Any) -> str:
        return f"the {self.name} source over {', '.join(config.paths)}"


@hookimpl
def register_source_kinds(register: Callable[[Any], None]) -> None:
    register(FilesKind())
