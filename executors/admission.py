"""What a job must pass before the daemon queues it.

A job that would fail for certain is refused at submission (422, naming the field) rather
than queued, started and failed, or worse retried: its paths (under the root, outside the
daemon's state, the model a folder, each glob matching something: :mod:`executors.paths`),
and each source's kind (installed here) and configuration (valid for that kind, checked by
the kind's own model, so a mapping where a path list belongs is caught here too).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

from executors.kinds import SourceKinds, load_source_kinds
from executors.paths import Budget, PathRefused, check_spec_paths
from executors.protocol import AnnealJobSpec, SourceRef
from plugins.errors import did_you_mean


class Refused(ValueError):
    """The job cannot run as given: ``code`` for machines, ``field`` (dotted) and
    ``message`` for people."""

    def __init__(self, code: str, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.code = code
        self.field = field
        self.message = message


@functools.cache
def installed_kinds(plugins: tuple[str, ...] = ()) -> SourceKinds:
    """The source kinds this executor can materialise (loaded once per process)."""
    return load_source_kinds(plugins)


def admit(
    spec: AnnealJobSpec,
    root: Path,
    *,
    deny: Sequence[Path] = (),
    plugins: tuple[str, ...] = (),
    budget: Budget | None = None,
) -> None:
    """Refuse a job that cannot run here.

    Args:
        spec: the job.
        root: the allow-listed root (resolved).
        deny: folders under the root that jobs may not name (the daemon's state).
        plugins: the daemon's extra plugin modules.
        budget: what resolving the job's paths may spend.

    Raises:
        Refused: ``path_refused``, ``unknown_source_kind`` or ``invalid_source_config``.
    """
    try:
        check_spec_paths(spec, root, deny=deny, plugins=plugins, budget=budget)
    except PathRefused as e:
        raise Refused("path_refused", e.field, e.message) from None
    kinds = installed_kinds(tuple(plugins)).kinds
    refs: list[tuple[str, SourceRef]] = []
    if spec.source is not None:
        refs.append(("source", spec.source))
    for i, part in enumerate(spec.mixture or ()):
        refs.append((f"mixture.{i}", part))
    if spec.replay is not None:
        refs.append(("replay.source", spec.replay.source))
    for prefix, ref in refs:
        kind = kinds.get(ref.kind)
        if kind is None:
            raise Refused(
                "unknown_source_kind",
                f"{prefix}.kind",
                f"no installed plugin provides source kind {ref.kind!r}"
                f"{did_you_mean(ref.kind, kinds)}; installed: {', '.join(sorted(kinds))}",
            )
        try:
            kind.parse_config(ref.config)
        except Exception as e:  # a plugin's own validation may raise anything
            raise Refused(
                "invalid_source_config", _config_field(prefix, e), str(e) or type(e).__name__
            ) from None


def _config_field(prefix: str, error: Exception) -> str:
    """The dotted field of the first problem, when the kind's model says which."""
    cause = error if isinstance(error, ValidationError) else error.__cause__
    if isinstance(cause, ValidationError) and cause.errors():
        loc = ".".join(str(p) for p in cause.errors()[0]["loc"])
        if loc:
            return f"{prefix}.config.{loc}"
    return f"{prefix}.config"
