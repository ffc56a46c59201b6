"""Reading documents from local files: JSONL, JSON, Parquet and plain-text globs.

Shared by the ``files``, ``licensed``, ``filtered`` and ``synthetic`` kinds. The order is
deterministic (globs in the order given, files sorted within a glob, records in file order)
so a seeded permutation of it is reproducible.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BeforeValidator

from plugins.errors import PluginError

JSON_SUFFIXES = (".jsonl", ".ndjson", ".json")
PARQUET_SUFFIXES = (".parquet", ".pq")


def _as_list(value: Any) -> Any:
    # `--set paths=data/*.jsonl` arrives as one string; a list field should accept it.
    if isinstance(value, str):
        return [value]
    return value


StrList = Annotated[list[str], BeforeValidator(_as_list)]
"""A list of strings that also accepts a single string (one glob)."""

TextSplit = Literal["file", "paragraph", "line"]


def expand(patterns: Sequence[str]) -> list[Path]:
    """The files matching each glob, sorted within a glob, globs in order, no repeats.

    Raises:
        PluginError: a pattern matches no file (names the pattern).
    """
    if not patterns:
        raise PluginError("no paths given; set paths to one or more files or globs")
    seen: set[Path] = set()
    out: list[Path] = []
    for pattern in patterns:
        expanded = os.path.expanduser(pattern)
        matches = sorted(Path(p) for p in glob.glob(expanded, recursive=True) if Path(p).is_file())
        if not matches:
            raise PluginError(
                f"no file matches {pattern!r} (from {Path.cwd()}); check the path or glob"
            )
        for m in matches:
            key = m.resolve()
            if key not in seen:
                seen.add(key)
                out.append(m)
    return out


def _read_file(path: Path, text_field: str, split: TextSplit) -> list[str]:
    name = path.name.lower()
    if name.endswith(PARQUET_SUFFIXES):
        import pyarrow.parquet as pq

        schema = pq.read_schema(path)
        if text_field not in schema.names:
            raise PluginError(
                f"{path} has no column {text_field!r} (columns: {', '.join(schema.names)}); "
                "set text_field"
            )
        column = pq.read_table(path, columns=[text_field]).column(text_field).to_pylist()
        return [t for t in column if isinstance(t, str)]
    if name.endswith(JSON_SUFFIXES):
        return _read_json(path, text_field)
    text = path.read_text(encoding="utf-8", errors="replace")
    if split == "file":
        return [text]
    if split == "line":
        return text.splitlines()
    return [p for p in text.split("\n\n")]


def _read_json(path: Path, text_field: str) -> list[str]:
    raw = path.read_text(encoding="utf-8")
    records: Iterable[Any]
    stripped = raw.lstrip()
    if path.suffix == ".json" and stripped.startswith("["):
        records = json.loads(raw)
    else:
        records = []
        for lineno, line in enumerate(raw.splitlines(), 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise PluginError(f"{path}:{lineno}: not valid JSON ({e.msg}); fix the line") from e
    out = []
    for i, record in enumerate(records, 1):
        if not isinstance(record, dict):
            raise PluginError(f"{path}: record {i} is not an object; each line must be {{...}}")
        if text_field not in record:
            keys = ", ".join(record) or "none"
            raise PluginError(
                f"{path}: record {i} has no field {text_field!r} (fields: {keys}); set text_field"
            )
        value = record[text_field]
        if isinstance(value, str):
            out.append(value)
    return out


def read_documents(
    patterns: Sequence[str],
    *,
    text_field: str = "text",
    split: TextSplit = "file",
    min_chars: int = 1,
    dedup: bool = True,
) -> list[str]:
    """All documents of the files matching ``patterns``, in a deterministic order.

    Args:
        patterns: file paths or globs (``**`` allowed).
        text_field: the field (JSON) or column (Parquet) holding the text.
        split: for plain-text files, one document per ``file``, ``paragraph`` or ``line``.
        min_chars: drop documents shorter than this after stripping whitespace.
        dedup: drop exact duplicates (same text), keeping the first.

    Raises:
        PluginError: a pattern matches nothing, or a file lacks the text field.
    """
    files = expand(patterns)
    stamp = tuple((str(p.resolve()), p.stat().st_mtime_ns, p.stat().st_size) for p in files)
    return list(_read_cached(stamp, text_field, split, min_chars, dedup))


@lru_cache(maxsize=16)
def _read_cached(
    stamp: tuple[tuple[str, int, int], ...],
    text_field: str,
    split: str,
    min_chars: int,
    dedup: bool,
) -> tuple[str, ...]:
    # Cached on (path, mtime, size): cap_tokens and materialize read the same pool twice.
    docs: list[str] = []
    seen: set[bytes] = set()
    for path, _, _ in stamp:
        for text in _read_file(Path(path), text_field, split):  # type: ignore[arg-type]
            if len(text.strip()) < min_chars:
                continue
            if dedup:
                digest = hashlib.sha1(text.encode("utf-8")).digest()
                if digest in seen:
                    continue
                seen.add(digest)
            docs.append(text)
    return tuple(docs)


def seeded_order(n: int, seed: int) -> np.ndarray:
    """A permutation of range(n) fixed by ``seed`` (numpy PCG64)."""
    return np.random.default_rng(seed).permutation(n)
