"""Path allow-listing: every path a job names must stay under the daemon's root.

:func:`executors.protocol.check_relative_path` rejects what is wrong whatever the root;
here a path is resolved against the real root (following symlinks) and refused when the
result leaves it. The daemon checks at submission and the worker again before use, so a
symlink swapped in between is still caught.
"""

from __future__ import annotations

import functools
import glob
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from executors.kinds import load_source_kinds
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
    _inside(root, target, field, deny)
    if cut >= 0:
        # The literal prefix stays inside, but a wildcard can still match a symlink that
        # leads out (``*/etc/passwd`` through ``root/link -> /``): check every match.
        for match in glob.iglob(glob.escape(str(root)) + "/" + rel, recursive=True):
            _inside(root, Path(match).resolve(strict=False), field, deny)
    if must_exist and not target.exists():
        raise PathRefused(field, "does not exist under the executor's root")
    return root / rel if cut >= 0 else target


def _inside(root: Path, target: Path, field: str, deny: Sequence[Path]) -> None:
    """Refuse ``target`` (resolved) outside ``root`` or in one of the ``deny`` folders."""
    if target != root and root not in target.parents:
        raise PathRefused(field, "resolves outside the executor's root (symlink?)")
    for folder in deny:
        if target == folder or folder in target.parents or target in folder.parents:
            raise PathRefused(field, "names the executor's own state folder")


def _config_paths(
    value: Any, prefix: str, key: str = "", declared: frozenset[str] = frozenset()
) -> Iterator[tuple[str, str]]:
    if isinstance(value, Mapping):
        for k, v in value.items():
            yield from _config_paths(v, f"{prefix}.{k}", str(k), declared)
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            yield from _config_paths(v, f"{prefix}.{i}", key, declared)
    elif isinstance(value, str) and (key in declared or _PATH_KEY.search(key.lower())):
        yield prefix, value


@functools.cache
def declared_path_fields(plugins: tuple[str, ...] = ()) -> dict[str, frozenset[str]]:
    """The path fields each installed source kind declares (``Config.path_fields``).

    Names such as ``pool`` or ``generator`` are paths only because their kind says so; the
    key-name pattern alone would let them name any file on the machine.
    """
    return {
        name: frozenset(kind.Config.path_fields)
        for name, kind in load_source_kinds(plugins).kinds.items()
    }


def check_spec_paths(
    spec: AnnealJobSpec, root: Path, deny: Sequence[Path] = (), plugins: tuple[str, ...] = ()
) -> None:
    """Check every path of a job against the root (and outside ``deny``).

    Args:
        spec: the job.
        root: the allow-listed root (resolved).
        deny: folders under the root that jobs may not name (the daemon's state).
        plugins: extra plugin modules, whose source kinds' path fields count too.

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
        refs.append(("source.config", spec.source.kind, spec.source.config))
    if spec.replay is not None:
        refs.append(("replay.source.config", spec.replay.source.kind, spec.replay.source.config))
    declared = declared_path_fields(tuple(plugins))
    for prefix, kind, config in refs:
        for field, value in _config_paths(config, prefix, declared=declared.get(kind, frozenset())):
            resolve_under(root, value, field=field, must_exist=False, deny=deny)
