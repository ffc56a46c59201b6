"""An example third-party annealplan plugin: the ``wordlist`` source kind.

Documents are strings of words drawn from a word list; document ``i`` is fixed by
``corpus_seed`` and ``i``, so the pool is the same everywhere, and ``materialize`` uses the
documents in an order fixed by its own seed.
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

from pydantic import Field

from planner.errors import PluginError
from plugins.contract import CurationCost, Materialized, PluginConfig, SourceKind
from plugins.hookspecs import hookimpl
from plugins.sources.packing import count_tokens, pack_documents, write_shards


class WordlistConfig(PluginConfig):
    path_fields = ("path",)  # made absolute by `annealplan sources add`

    path: str
    """A text file with one word per line."""
    documents: int = Field(default=500, gt=0)
    """How many documents the pool holds (this sets the cap)."""
    words_per_document: int = Field(default=40, gt=0)
    """Words per document."""
    corpus_seed: int = 0
    """Fixes the pool's content."""


class WordlistKind(SourceKind):
    name = "wordlist"
    description = "pseudo-documents drawn from a word list (example third-party plugin)"
    Config = WordlistConfig

    def _docs(self, config: WordlistConfig) -> list[str]:
        path = Path(config.path)
        if not path.is_file():
            raise PluginError(f"word list {config.path!r} does not exist; check the path")
        words = [w.strip() for w in path.read_text().splitlines() if w.strip()]
        if not words:
            raise PluginError(f"word list {config.path!r} is empty")
        docs = []
        for i in range(config.documents):
            rng = random.Random(f"{config.corpus_seed}:{i}")
            docs.append(" ".join(rng.choice(words) for _ in range(config.words_per_document)))
        return docs

    def cap_tokens(self, config: PluginConfig, tokenizer: Any = None) -> float | None:
        assert isinstance(config, WordlistConfig)
        docs = self._docs(config)
        if tokenizer is None:
            return float(sum(len(d) for d in docs) / 4 + len(docs))  # ~4 characters per token
        return float(count_tokens(tokenizer, docs))

    def materialize(
        self, config: PluginConfig, tokens: int, dest: Path, seed: int, tokenizer: Any
    ) -> Materialized:
        assert isinstance(config, WordlistConfig)
        start = time.perf_counter()
        docs = self._docs(config)
        order = list(range(len(docs)))
        random.Random(seed).shuffle(order)
        packed = pack_documents(
            (docs[i] for i in order), tokens=tokens, tokenizer=tokenizer, what="the word list"
        )
        return write_shards(
            packed.ids,
            dest,
            documents_used=packed.documents_used,
            curation=CurationCost(seconds=time.perf_counter() - start),
            kind=self.name,
            seed=seed,
            tokenizer=tokenizer,
            config=config.model_dump(mode="json"),
        )


@hookimpl
def register_source_kinds(register):
    register(WordlistKind())
