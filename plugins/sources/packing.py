"""Packing documents into token shards: the part of materialisation every kind shares.

A kind yields documents (text) in a deterministic order; :func:`pack_documents` tokenises
them without special tokens, puts the tokenizer's EOS after each, stops as soon as it holds
the requested number of tokens and cuts the stream to exactly that many. :func:`write_shards`
writes the ids as numpy ``.npy`` shards plus ``manifest.json`` into a temporary sibling
folder and renames it into place, so a failure leaves nothing half-written.

Third-party kinds may use both functions (see examples/plugin-example).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import shutil
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from plugins.contract import CurationCost, Materialized, Tokenizer
from plugins.errors import PluginError

MANIFEST = "manifest.json"
FORMAT = "annealplan-tokens/1"
DEFAULT_SHARD_TOKENS = 1 << 24  # 16M tokens: 32 MB of uint16 per shard


class PoolTooSmall(PluginError):
    """The source cannot supply the requested tokens; ``cap`` says how many it can."""

    default_title = "Not enough data"

    def __init__(self, msg: str, *, cap: int, requested: int) -> None:
        super().__init__(msg)
        self.cap = cap
        self.requested = requested


def pool_too_small(
    what: str,
    cap: int,
    requested: int,
    hint: str = "",
    reason: str = "its cap with this tokenizer",
) -> PoolTooSmall:
    """The error for a pool holding fewer tokens than requested, stating the cap plainly."""
    tail = f"; {hint}" if hint else ""
    return PoolTooSmall(
        f"{what} holds only {cap:,} tokens ({reason}) but {requested:,} "
        f"were requested; ask for at most {cap:,} tokens or add data{tail}",
        cap=cap,
        requested=requested,
    )


def eos_id(tokenizer: Tokenizer) -> int:
    """The tokenizer's EOS id (raises PluginError when it has none)."""
    eos = getattr(tokenizer, "eos_token_id", None)
    if eos is None:
        raise PluginError(
            "the tokenizer has no EOS token; documents are joined with EOS, so set "
            "tokenizer.eos_token (e.g. to '</s>') before materialising"
        )
    return int(eos)


def token_dtype(tokenizer: Tokenizer) -> np.dtype:
    """uint16 when every id fits (vocabularies up to 65,536), else uint32."""
    return np.dtype(np.uint16) if len(tokenizer) <= 1 << 16 else np.dtype(np.uint32)


def encode(tokenizer: Tokenizer, texts: list[str]) -> list[list[int]]:
    """Token ids of each text, without special tokens."""
    if not texts:
        return []
    return [list(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]


def count_tokens(tokenizer: Tokenizer, texts: Iterable[str], batch: int = 256) -> int:
    """Tokens the texts make once packed (each text's tokens plus one EOS)."""
    total = 0
    it = iter(texts)
    while chunk := list(itertools.islice(it, batch)):
        total += sum(len(ids) + 1 for ids in encode(tokenizer, chunk))
    return total


class PackResult:
    """What :func:`pack_documents` gathered: ``ids`` (exactly the tokens asked for) and
    how many documents contributed."""

    __slots__ = ("documents_used", "ids")

    def __init__(self, ids: np.ndarray, documents_used: int) -> None:
        self.ids = ids
        self.documents_used = documents_used


def pack_documents(
    docs: Iterable[str],
    *,
    tokens: int,
    tokenizer: Tokenizer,
    what: str = "this source",
    hint: str = "",
) -> PackResult:
    """Tokenise documents in order until exactly ``tokens`` tokens are gathered.

    Documents are pulled lazily, a few at a time (as many as the remaining tokens need at
    the average length so far), so an expensive producer such as a generator model is not
    asked for more than needed.

    Args:
        docs: the documents, in the (seeded) order they should be used.
        tokens: how many tokens to return.
        tokenizer: a Hugging Face tokenizer (``eos_token_id`` is appended after each doc).
        what: the source, for the error message.
        hint: appended to the pool-too-small message.

    Raises:
        PoolTooSmall: the documents ran out first (the message states how many there were).
    """
    if tokens <= 0:
        raise PluginError(f"asked for {tokens} tokens; ask for a positive number")
    eos = eos_id(tokenizer)
    dtype = token_dtype(tokenizer)
    parts: list[np.ndarray] = []
    have = 0
    used = 0
    seen_docs = 0
    it: Iterator[str] = iter(docs)
    while have < tokens:
        avg = have / seen_docs if seen_docs else 256.0
        want = int(min(256, max(1, (tokens - have) / max(avg, 1.0) + 1)))
        chunk = [d for d in itertools.islice(it, want)]
        if not chunk:
            raise pool_too_small(what, have, tokens, hint)
        seen_docs += len(chunk)
        for ids in encode(tokenizer, chunk):
            if have >= tokens:
                break
            arr = np.asarray([*ids, eos], dtype=dtype)
            parts.append(arr)
            have += len(arr)
            used += 1
    ids = np.concatenate(parts)[:tokens] if parts else np.zeros(0, dtype=dtype)
    return PackResult(ids, used)


def content_hash(ids: np.ndarray) -> str:
    """sha256 over the token ids as little-endian uint32 (independent of shard size)."""
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(ids, dtype="<u4").tobytes())
    return h.hexdigest()


def write_shards(
    ids: np.ndarray,
    dest: Path,
    *,
    documents_used: int,
    curation: CurationCost,
    kind: str,
    seed: int,
    tokenizer: Tokenizer,
    config: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
    shard_tokens: int = DEFAULT_SHARD_TOKENS,
) -> Materialized:
    """Write ``ids`` as ``shard-00000.npy``… plus ``manifest.json``, atomically.

    Everything is written into a temporary sibling folder that is renamed to ``dest`` at
    the end. An existing ``dest`` is replaced only when it is itself a materialisation (it
    holds a manifest) or empty; anything else is left alone and reported.

    Raises:
        PluginError: ``dest`` exists and is not a previous materialisation.
    """
    dest = Path(dest)
    if dest.exists() and not (dest / MANIFEST).exists() and any(dest.iterdir()):
        raise PluginError(
            f"{dest} exists and is not a materialised source (no {MANIFEST}); "
            "choose an empty or new folder"
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        shards = []
        for i, start in enumerate(range(0, max(len(ids), 1), shard_tokens)):
            name = f"shard-{i:05d}.npy"
            np.save(tmp / name, ids[start : start + shard_tokens], allow_pickle=False)
            shards.append({"file": name, "tokens": int(min(shard_tokens, len(ids) - start))})
        digest = content_hash(ids)
        manifest = {
            "format": FORMAT,
            "kind": kind,
            "tokens": len(ids),
            "dtype": ids.dtype.name,
            "shards": shards,
            "content_hash": digest,
            "documents_used": documents_used,
            "seed": seed,
            "eos_token_id": eos_id(tokenizer),
            "tokenizer": getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__,
            "vocab_size": len(tokenizer),
            "config": dict(config or {}),
            "curation": _jsonable(asdict(curation)),
            **({"extra": _jsonable(dict(extra))} if extra else {}),
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        _swap_into_place(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return Materialized(
        dest=dest,
        tokens=len(ids),
        shards=tuple(s["file"] for s in shards),
        content_hash=digest,
        documents_used=documents_used,
        curation=curation,
    )


def _swap_into_place(tmp: Path, dest: Path) -> None:
    if not dest.exists():
        tmp.rename(dest)
        return
    trash = dest.parent / f".{dest.name}.old-{uuid.uuid4().hex[:8]}"
    dest.rename(trash)
    try:
        tmp.rename(dest)
    except BaseException:
        trash.rename(dest)
        raise
    shutil.rmtree(trash, ignore_errors=True)


def _jsonable(value: Any) -> Any:
    return json.loads(
        json.dumps(value, default=lambda o: o.item() if hasattr(o, "item") else str(o))
    )


def read_manifest(dest: Path) -> dict[str, Any]:
    """The manifest of a materialised folder."""
    return json.loads((Path(dest) / MANIFEST).read_text())


def load_tokens(dest: Path) -> np.ndarray:
    """All token ids of a materialised folder, in order (for trainers and tests)."""
    manifest = read_manifest(dest)
    arrays = [np.load(Path(dest) / s["file"]) for s in manifest["shards"]]
    return np.concatenate(arrays) if arrays else np.zeros(0, dtype=manifest["dtype"])
