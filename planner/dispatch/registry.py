"""The executors a project knows, kept in ``executors.toml`` in the project folder.

    [executors.gpu1]
    backend = "http"
    url = "http://127.0.0.1:8765"
    token_file = "~/.annealplan/gpu1.token"

Each entry names an executor backend (``backend``; ``http`` when absent, so files written
before backends existed still load) and holds that backend's settings, which the backend
validates: an unknown or missing setting is an error naming it. Backends come from the
plugin registry (``register_executor_backends``), the built-in ``http`` and ``local`` ones
exactly like a third party's. With no executor registered the planner uses the ``local``
backend: an embedded daemon on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import re
import tomllib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import tomli_w

from planner.errors import AnnealplanError, ConfigError

if TYPE_CHECKING:
    from plugins.contract import BackendSettings, ExecutorBackend, JobSubmitter
    from plugins.registry import Registry

EXECUTORS_FILE = "executors.toml"
DEFAULT_BACKEND = "http"
#: the backend dispatch uses when no executor is registered
EMBEDDED_BACKEND = "local"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


@dataclass(frozen=True, slots=True)
class ExecutorEntry:
    """One registered executor.

    Attributes:
        name: its name (the ``executors.toml`` key).
        backend: the executor backend that reaches it.
        settings: that backend's validated settings.
    """

    name: str
    backend: str
    settings: BackendSettings

    def settings_dict(self) -> dict[str, Any]:
        """The settings as written to ``executors.toml``: those given, defaults left out
        (so a later default applies to an entry that never chose)."""
        return self.settings.model_dump(mode="json", exclude_unset=True, exclude_none=True)


def load_executors(project_dir: Path, registry: Registry) -> list[ExecutorEntry]:
    """The registered executors, by name, each with its backend's validated settings.

    Raises:
        ConfigError: the file cannot be read, an entry names an unknown backend, or its
            settings are invalid (naming the entry and the setting).
    """
    path = Path(project_dir) / EXECUTORS_FILE
    if not path.is_file():
        return []
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"cannot read {path}: {e}; fix or remove it") from e
    out = []
    for name, table in sorted((data.get("executors") or {}).items()):
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: executor {name!r} must be a table of settings")
        raw = dict(table)
        backend_name = str(raw.pop("backend", DEFAULT_BACKEND))
        try:
            backend = registry.executor_backend(backend_name)
            settings = backend.parse_settings(raw)
        except AnnealplanError as e:
            raise ConfigError(f"{path}: executor {name!r}: {e.msg}") from e
        out.append(ExecutorEntry(name, backend_name, settings))
    return out


def _write(project_dir: Path, entries: list[ExecutorEntry]) -> None:
    tables = {
        e.name: {"backend": e.backend, **e.settings_dict()}
        for e in sorted(entries, key=lambda e: e.name)
    }
    text = "# Executors of this project (annealplan executors add/remove).\n\n"
    if tables:
        text += tomli_w.dumps({"executors": tables})
    path = Path(project_dir) / EXECUTORS_FILE
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def add_executor(
    project_dir: Path,
    registry: Registry,
    name: str,
    settings: Mapping[str, Any],
    *,
    backend: str = DEFAULT_BACKEND,
    replace: bool = False,
) -> ExecutorEntry:
    """Register an executor reached through ``backend`` with these settings.

    Raises:
        ConfigError: bad name, settings the backend refuses (a bad URL, a missing token
            file…), or the name is taken.
        PluginError: no installed plugin provides ``backend`` (with close names).
    """
    if not _NAME.match(name):
        raise ConfigError(f"executor name {name!r}: use letters, digits, '-' and '_'")
    chosen = registry.executor_backend(backend)
    parsed = chosen.parse_settings(settings)
    chosen.check(parsed)
    entries = load_executors(project_dir, registry)
    if any(e.name == name for e in entries) and not replace:
        raise ConfigError(f"executor {name!r} exists; pass --replace to change it")
    entry = ExecutorEntry(name, backend, parsed)
    _write(project_dir, [e for e in entries if e.name != name] + [entry])
    return entry


def remove_executor(project_dir: Path, registry: Registry, name: str) -> None:
    entries = load_executors(project_dir, registry)
    if not any(e.name == name for e in entries):
        raise ConfigError(f"no executor {name!r}; see `annealplan executors list`")
    _write(project_dir, [e for e in entries if e.name != name])


def backend_of(registry: Registry, entry: ExecutorEntry) -> ExecutorBackend:
    """The backend that reaches ``entry``."""
    return registry.executor_backend(entry.backend)


def connect(
    registry: Registry, entry: ExecutorEntry, project_dir: Path, *, retries: int | None = None
) -> JobSubmitter:
    """Open a job submitter for one registered executor (the caller closes it)."""
    return backend_of(registry, entry).connect(
        entry.settings, name=entry.name, project_dir=Path(project_dir), retries=retries
    )


def embedded_entry(registry: Registry, **settings: Any) -> ExecutorEntry:
    """The executor dispatch uses when none is registered: the ``local`` backend."""
    backend = registry.executor_backend(EMBEDDED_BACKEND)
    return ExecutorEntry(EMBEDDED_BACKEND, EMBEDDED_BACKEND, backend.parse_settings(settings))


@contextlib.asynccontextmanager
async def open_submitters(
    project_dir: Path, registry: Registry, entries: list[ExecutorEntry]
) -> AsyncIterator[list[JobSubmitter]]:
    """Job submitters for ``entries`` through their backends, all closed on exit (those
    already open are closed too when a later one fails to connect)."""
    submitters: list[JobSubmitter] = []
    try:
        for entry in entries:
            submitters.append(connect(registry, entry, project_dir))
        yield submitters
    finally:
        for submitter in reversed(submitters):
            await submitter.aclose()


@contextlib.asynccontextmanager
async def open_clients(
    project_dir: Path, registry: Registry, *, only: str | None = None
) -> AsyncIterator[list[JobSubmitter]]:
    """Job submitters for the registered executors, or for an embedded local daemon when
    none is registered.

    Args:
        project_dir: the project folder.
        registry: the plugin registry (its executor backends).
        only: a single executor by name.

    Yields:
        :class:`~plugins.contract.JobSubmitter` objects (closed, and the local daemon
        stopped, on exit).
    """
    entries = load_executors(project_dir, registry)
    if only is not None:
        entries = [e for e in entries if e.name == only]
        if not entries and only != EMBEDDED_BACKEND:
            raise ConfigError(f"no executor {only!r}; see `annealplan executors list`")
    async with open_submitters(project_dir, registry, entries or [embedded_entry(registry)]) as s:
        yield s
