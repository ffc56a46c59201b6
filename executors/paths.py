"""Path allow-listing: every path a job names must stay under the daemon's root.

:func:`executors.protocol.check_relative_path` rejects what is wrong whatever the root;
here a path is resolved against the real root (following symlinks) and refused when the
result leaves it. The daemon checks at submission and the worker again before use, so a
symlink swapped in between is still caught.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from executors.protocol import AnnealJobSpec, check_relative_path

# Keys of a source's config whose string values are paths (checked like any job path).
_PATH_KEY = re.compile(r"(^|_)(path|paths|dir|dirs|file|files|folder|folders|root|glob|globs)$")
_GLOB_CHARS = "*?["


class PathRefused(ValueError):
    """A path escapes the root, does not exist, or is malformed."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def resolve_under(
    root: Path,
    rel: str,
    *,
    field: str,
    must_exist: bool = True,
    deny: Sequence[Path] = (),
) -> Path:
    """Resolve ``rel`` under ``root``; refuse anything that ends up outside.

    Args:
        root: the allow-listed root (already resolved).
        rel: the relative path a client sent.
        field: the dotted field name, for the error.
        must_exist: refuse paths that do not exist.
        deny: folders under the root that jobs may not read (the daemon's own state).

    Raises:
        PathRefused: malformed, outside the root (symlinks followed), or missing.
    """
    try:
        rel = check_relative_path(rel)
    except ValueError as e:
        raise PathRefused(field, str(e)) from None
    literal = rel
    cut = min((rel.find(c) for c in _GLOB_CHARS if c in rel), default=-1)
    if cut >= 0:
        literal = rel[:cut].rsplit("/", 1)[0] if "/" in rel[:cut] else "."
    target = (root / literal).resolve(strict=False)
    if target != root and root not in target.parents:
        raise PathRefused(field, "resolves outside the executor's root (symlink?)")
    for folder in deny:
        if target == folder or folder in target.parents or target in folder.parents:
            raise PathRefused(field, "names the executor's own state folder")
    if must_exist and not target.exists():
        raise PathRefused(field, "does not exist under the executor's root")
    return root / rel if cut >= 0 else target


def _config_paths(value: Any, prefix: str, key: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(value, Mapping):
        for k, v in value.items():
            yield from _config_paths(v, f"{prefix}.{k}", str(k))
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            yield from _config_paths(v, f"{prefix}.{i}", key)
    elif isinstance(value, str) and _PATH_KEY.search(key.lower()):
        yield prefix, value


def check_spec_paths(spec: AnnealJobSpec, root: Path, deny: Sequence[Path] = ()) -> None:
    """Check every path of a job against the root (and outside ``deny``).

    Raises:
        PathRefused: naming the first offending field.
    """
    resolve_under(root, spec.base_model, field="base_model", deny=deny)
    if spec.tokenizer is not None:
        resolve_under(root, spec.tokenizer, field="tokenizer", deny=deny)
    for i, d in enumerate(spec.evaluation.task_dirs):
        resolve_under(root, d, field=f"evaluation.task_dirs.{i}", deny=deny)
    refs = []
    if spec.source is not None:
        refs.append(("source.config", spec.source.config))
    if spec.replay is not None:
        refs.append(("replay.source.config", spec.replay.source.config))
    for prefix, config in refs:
        for field, value in _config_paths(config, prefix):
            resolve_under(root, value, field=field, must_exist=False, deny=deny)
