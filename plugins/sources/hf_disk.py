"""The ``hf-disk`` kind: a Hugging Face dataset on local disk, read through ``datasets``.

Either a folder written by ``Dataset.save_to_disk`` / ``DatasetDict.save_to_disk`` (pick the
split), or local Parquet files. Sampling, deduplication and the cap work as in ``files``.
"""

from __future__ import annotations

import glob
import hashlib
import os
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import Field

from plugins.errors import PluginError, executor_extra
from plugins.hookspecs import hookimpl
from plugins.sources.documents import StrList, expand
from plugins.sources.files import FilesKind, PoolConfig


class HfDiskConfig(PoolConfig):
    """Configuration of the ``hf-disk`` kind."""

    path_fields = ("path",)

    path: StrList = Field(min_length=1)
    """A ``save_to_disk`` folder, or Parquet files/globs."""
    split: str = "train"
    """The split to read when the folder holds a DatasetDict."""


def _is_saved_dataset(path: Path) -> bool:
    return path.is_dir() and any(
        (path / marker).exists() for marker in ("dataset_dict.json", "state.json")
    )


@lru_cache(maxsize=8)
def _load(paths: tuple[str, ...], split: str, text_field: str, stamp: str) -> tuple[str, ...]:
    with executor_extra("the hf-disk kind"):
        import datasets

    if len(paths) == 1 and _is_saved_dataset(Path(paths[0])):
        loaded = datasets.load_from_disk(paths[0], keep_in_memory=True)
        if isinstance(loaded, datasets.DatasetDict):
            if split not in loaded:
                raise PluginError(
                    f"{paths[0]} has no split {split!r} (splits: {', '.join(loaded)}); set split"
                )
            loaded = loaded[split]
    else:
        files = [str(p) for p in expand(list(paths))]
        if not all(f.lower().endswith((".parquet", ".pq")) for f in files):
            raise PluginError(
                f"{', '.join(paths)}: hf-disk reads a save_to_disk folder or .parquet files; "
                "use the files kind for JSONL or text"
            )
        loaded = datasets.Dataset.from_parquet(files, keep_in_memory=True)
    if text_field not in loaded.column_names:
        raise PluginError(
            f"{', '.join(paths)} has no column {text_field!r} "
            f"(columns: {', '.join(loaded.column_names)}); set text_field"
        )
    return tuple(t for t in loaded[text_field] if isinstance(t, str))


class HfDiskKind(FilesKind):
    """A local Hugging Face dataset (save_to_disk folder or Parquet)."""

    name = "hf-disk"
    description = (
        "a Hugging Face dataset on local disk (save_to_disk folder or Parquet) via datasets; "
        "seeded sampling, exact-duplicate removal"
    )
    Config = HfDiskConfig

    def documents(self, config: Any) -> list[str]:
        assert isinstance(config, HfDiskConfig)
        for p in config.path:
            if not glob.glob(os.path.expanduser(p)):
                raise PluginError(f"{p!r} does not exist (from {Path.cwd()}); check the path")
        # The cache key includes modification times so an updated dataset is re-read.
        stamp = hashlib.sha1(
            "|".join(
                f"{q}:{q.stat().st_mtime_ns}" for p in config.path for q in _stat_targets(Path(p))
            ).encode()
        ).hexdigest()
        texts = _load(tuple(config.path), config.split, config.text_field, stamp)
        seen: set[bytes] = set()
        docs = []
        for text in texts:
            if len(text.strip()) < config.min_chars:
                continue
            if config.dedup:
                digest = hashlib.sha1(text.encode("utf-8")).digest()
                if digest in seen:
                    continue
                seen.add(digest)
            docs.append(text)
        return docs

    def _what(self, config: Any) -> str:
        return f"the hf-disk source at {', '.join(config.path)}"


def _stat_targets(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(q for q in path.rglob("*") if q.is_file())
    if path.exists():
        return [path]
    return sorted(Path(q) for q in glob.glob(os.path.expanduser(str(path))))


@hookimpl
def register_source_kinds(register: Callable[[Any], None]) -> None:
    register(HfDiskKind())
