"""Path allow-listing: every path a job names must stay under the daemon's root.

:func:`executors.protocol.check_relative_path` rejects what is wrong whatever the root;
here a path is resolved against the real root (following symlinks) and refused when the
result leaves it. The daemon checks at submission and the worker again before use, so a
symlink swapped in between is still caught.

Globs (in the path fields of a source's config) are expanded here as the source plugins
expand them (:func:`glob.glob` with ``recursive=True``: ``**`` follows links to folders,
wildcards skip hidden names), but with a bound on the work: a spec's globs may look at
:data:`GLOB_ENTRY_LIMIT` entries in all and take :data:`RESOLVE_SECONDS`, and a ``**``
that meets a symlink loop (a link to a folder it is already inside) is refused, where
``glob`` would walk the loop until the path grew too long. A glob must match something.
"""

from __future__ import annotations

import errno
import fnmatch
import functools
import os
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from executors.kinds import load_source_kinds
from executors.protocol import AnnealJobSpec, check_relative_path

# Keys of a source's config whose string values are paths (checked like any job path).
_PATH_KEY = re.compile(r"(^|_)(path|paths|dir|dirs|file|files|folder|folders|root|glob|globs)$")
_GLOB_CHARS = "*?["
#: directory entries the globs of one spec may look at, in all (a count, so the same
#: spec gets the same answer on a busy machine as on an idle one)
GLOB_ENTRY_LIMIT = 100_000
#: seconds the paths of one spec may take to resolve (a slow or network file system)
RESOLVE_SECONDS = 10.0


class PathRefused(ValueError):
    """A path escapes the root, does not exist, or is malformed."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


class Budget:
    """What resolving one spec's paths may spend: directory entries and seconds."""

    def __init__(self, entries: int = GLOB_ENTRY_LIMIT, seconds: float = RESOLVE_SECONDS) -> None:
        self.entries = entries
        self.seconds = seconds
        self._left = entries
        self._deadline = time.monotonic() + seconds

    def spend(self, field: str, entries: int = 1) -> None:
        """Count ``entries`` looked at for ``field``.

        Raises:
            PathRefused: over the count or past the deadline.
        """
        self._left -= entries
        if entries and self._left < 0:
            raise PathRefused(
                field,
                f"the glob looks at more than {self.entries} files and folders; "
                "narrow it (fewer ** or a longer fixed prefix)",
            )
        if time.monotonic() > self._deadline:
            raise PathRefused(
                field,
                f"resolving the job's paths took more than {self.seconds:.0f} s; narrow the globs",
            )


def has_magic(rel: str) -> bool:
    """True when ``rel`` is a glob (holds ``*``, ``?`` or ``[``)."""
    return any(c in rel for c in _GLOB_CHARS)


def resolve_under(
    root: Path,
    rel: str,
    *,
    field: str,
    must_exist: bool = True,
    deny: Sequence[Path] = (),
    pattern: bool = False,
    folder: bool = False,
    budget: Budget | None = None,
) -> Path:
    """Resolve ``rel`` under ``root``; refuse anything that ends up outside.

    Args:
        root: the allow-listed root (already resolved).
        rel: the relative path a client sent.
        field: the dotted field name, for the error.
        must_exist: refuse paths that do not exist (a glob must match something either way).
        deny: folders under the root that jobs may not read (the daemon's own state).
        pattern: ``rel`` may be a glob (a source's files); otherwise glob characters are
            refused, since the path is used as it is.
        folder: the path must be a folder (a model, a tokenizer, a task folder).
        budget: what resolving may spend (shared by the paths of one spec).

    Returns:
        The resolved path, or for a glob ``root / rel`` as it was given.

    Raises:
        PathRefused: malformed, outside the root (symlinks followed), a symlink loop,
            missing, not a folder, a glob that matches nothing, or over the budget.
    """
    try:
        rel = check_relative_path(rel)
    except ValueError as e:
        raise PathRefused(field, str(e)) from None
    budget = budget or Budget()
    if has_magic(rel):
        if not pattern:
            raise PathRefused(field, "must name one path, not a glob (no *, ? or [)")
        _check_glob(root, rel, field, deny, budget)
        return root / rel
    target = _real(root / rel, field)
    _inside(root, target, field, deny)
    if (must_exist or folder) and not target.exists():
        raise PathRefused(field, "does not exist under the executor's root")
    if folder and not target.is_dir():
        raise PathRefused(field, "is a file; give the folder that holds it")
    return target


def _check_glob(root: Path, rel: str, field: str, deny: Sequence[Path], budget: Budget) -> None:
    """Expand a glob with a bound on the work; refuse it when a match leaves the root or
    names the daemon's state, or when nothing matches."""
    parts = rel.split("/")
    fixed = next(i for i, p in enumerate(parts) if has_magic(p))
    start = root.joinpath(*parts[:fixed])
    prefix = _real(start, field)
    # The fixed prefix may be a parent of the state folder (``*.jsonl`` at the root, where
    # the state folder lives by default): only what the glob matches must stay out of it.
    _inside(root, prefix, field, deny, parents_too=False)
    found = False
    for match in _expand(root, start, parts[fixed:], field, budget):
        budget.spend(field, 0)  # the deadline: resolving many matches takes time too
        _inside(root, _real(match, field), field, deny)
        found = True
    if not found:
        raise PathRefused(field, "the glob matches nothing under the executor's root")


def _expand(
    root: Path, start: Path, parts: list[str], field: str, budget: Budget
) -> Iterator[Path]:
    """The paths ``start/parts…`` matches, as ``glob.glob(recursive=True)`` finds them."""
    current = [start] if start.is_dir() else []
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        found: list[Path] = []
        for base in current:
            if part == "**":
                found.extend(_walk(root, base, field, budget, dirs_only=not last))
            elif has_magic(part):
                for entry in _entries(base, field, budget):
                    if _hidden(entry.name) and not part.startswith("."):
                        continue
                    if fnmatch.fnmatchcase(entry.name, part) and (last or _is_dir(entry)):
                        found.append(base / entry.name)
            else:
                budget.spend(field)
                path = base / part
                if os.path.lexists(path) and (last or path.is_dir()):
                    found.append(path)
        current = found
    yield from current


def _walk(root: Path, top: Path, field: str, budget: Budget, *, dirs_only: bool) -> list[Path]:
    """What ``**`` matches below ``top`` (``top`` included), refusing symlink loops and
    links to folders outside the root."""
    under = str(root) + os.sep
    out = [str(top)]
    # Depth first, on strings (a walk may list many thousands of folders). Each folder
    # goes with its real path (a link resolved from its folder's real path, one link at a
    # time) and the real paths of the folders above it on this walk: a link to any of
    # them is a loop.
    pending: list[tuple[str, str, frozenset[str]]] = [
        (str(top), str(_real(top, field)), frozenset())
    ]
    while pending:
        folder, real, above = pending.pop()
        if real in above:
            raise PathRefused(
                field,
                f"the glob's ** meets a symlink loop at {os.path.relpath(folder, root)}; "
                "remove the link or name the files without **",
            )
        if real != str(root) and not real.startswith(under):
            raise PathRefused(
                field,
                f"the glob's ** follows {os.path.relpath(folder, root)} outside the "
                "executor's root (symlink?)",
            )
        below = above | {real}
        subfolders = []
        # list the real folder: the kernel need not follow the links of the walked path
        for entry in _entries(real, field, budget):
            if _hidden(entry.name):
                continue
            path = f"{folder}/{entry.name}"
            is_dir = _is_dir(entry)
            if is_dir or not dirs_only:
                out.append(path)
            if is_dir:
                sub = f"{real}/{entry.name}"
                if entry.is_symlink():
                    sub = os.path.realpath(sub)
                subfolders.append((path, sub, below))
        pending.extend(reversed(subfolders))
    return [Path(p) for p in out]


def _entries(folder: Path | str, field: str, budget: Budget) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError:
        return []  # not a folder, or unreadable: glob skips it the same way
    budget.spend(field, len(entries) + 1)
    return entries


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()  # follows symlinks, as glob does
    except OSError:
        return False


def _hidden(name: str) -> bool:
    return name.startswith(".")


def _real(path: Path, field: str) -> Path:
    """``path`` with its symlinks resolved; a loop or an unresolvable path is refused."""
    try:
        target = path.resolve(strict=False)
    except RuntimeError:  # Python before 3.13 reports a symlink loop this way
        raise PathRefused(field, "is a symlink loop; replace the link") from None
    except OSError as e:
        raise PathRefused(field, f"cannot be resolved: {e.strerror}") from None
    try:
        os.stat(target)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise PathRefused(field, "is a symlink loop; replace the link") from None
    return target


def _inside(
    root: Path, target: Path, field: str, deny: Sequence[Path], *, parents_too: bool = True
) -> None:
    """Refuse ``target`` (resolved) outside ``root`` or in one of the ``deny`` folders (or,
    with ``parents_too``, a folder that holds one)."""
    if target != root and root not in target.parents:
        raise PathRefused(field, "resolves outside the executor's root (symlink?)")
    for folder in deny:
        holds = parents_too and target in folder.parents
        if target == folder or folder in target.parents or holds:
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
    spec: AnnealJobSpec,
    root: Path,
    deny: Sequence[Path] = (),
    plugins: tuple[str, ...] = (),
    budget: Budget | None = None,
) -> None:
    """Check every path of a job against the root (and outside ``deny``).

    The model, the tokenizer and the task folders must be folders; a source's paths may
    be globs, which must match something.

    Args:
        spec: the job.
        root: the allow-listed root (resolved).
        deny: folders under the root that jobs may not name (the daemon's state).
        plugins: extra plugin modules, whose source kinds' path fields count too.
        budget: what resolving may spend (default: :data:`GLOB_ENTRY_LIMIT` entries,
            :data:`RESOLVE_SECONDS`).

    Raises:
        PathRefused: naming the first offending field.
    """
    budget = budget or Budget()
    check = functools.partial(resolve_under, root, deny=deny, budget=budget)
    check(spec.base_model, field="base_model", folder=True)
    if spec.tokenizer is not None:
        check(spec.tokenizer, field="tokenizer", folder=True)
    for i, d in enumerate(spec.evaluation.task_dirs):
        check(d, field=f"evaluation.task_dirs.{i}", folder=True)
    refs = []
    if spec.source is not None:
        refs.append(("source.config", spec.source.kind, spec.source.config))
    for i, part in enumerate(spec.mixture or ()):
        refs.append((f"mixture.{i}.config", part.kind, part.config))
    if spec.replay is not None:
        refs.append(("replay.source.config", spec.replay.source.kind, spec.replay.source.config))
    declared = declared_path_fields(tuple(plugins))
    for prefix, kind, config in refs:
        for field, value in _config_paths(config, prefix, declared=declared.get(kind, frozenset())):
            check(value, field=field, must_exist=False, pattern=True)
