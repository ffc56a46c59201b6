"""The executors a project knows, kept in ``executors.toml`` in the project folder.

    [executors.gpu1]
    url = "http://127.0.0.1:8765"
    token_file = "~/.annealplan/gpu1.token"

Only the token *file* is stored, never the token. With no executor registered the planner
uses the embedded local daemon (:class:`planner.dispatch.local.LocalExecutor`).
"""

from __future__ import annotations

import contextlib
import json
import re
import tomllib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from planner.errors import ConfigError

EXECUTORS_FILE = "executors.toml"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


@dataclass(frozen=True, slots=True)
class ExecutorEntry:
    """One registered executor daemon."""

    name: str
    url: str
    token_file: str


def load_executors(project_dir: Path) -> list[ExecutorEntry]:
    """The registered executors, by name.

    Raises:
        ConfigError: the file cannot be read or an entry lacks url/token_file.
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
        if not isinstance(table, dict) or not table.get("url") or not table.get("token_file"):
            raise ConfigError(f"{path}: executor {name!r} needs url and token_file")
        out.append(ExecutorEntry(name, str(table["url"]), str(table["token_file"])))
    return out


def _write(project_dir: Path, entries: list[ExecutorEntry]) -> None:
    lines = ["# Executors of this project (annealplan executors add/remove).", ""]
    for e in sorted(entries, key=lambda e: e.name):
        # JSON strings are valid TOML basic strings for these characters.
        lines += [
            f"[executors.{e.name}]",
            f"url = {json.dumps(e.url)}",
            f"token_file = {json.dumps(e.token_file)}",
            "",
        ]
    path = Path(project_dir) / EXECUTORS_FILE
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("\n".join(lines))
    tmp.replace(path)


def add_executor(
    project_dir: Path, name: str, url: str, token_file: str, *, replace: bool = False
) -> ExecutorEntry:
    """Register an executor.

    Raises:
        ConfigError: bad name or URL, missing token file, or the name is taken.
    """
    if not _NAME.match(name):
        raise ConfigError(f"executor name {name!r}: use letters, digits, '-' and '_'")
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ConfigError(f"{url!r} is not an http(s) URL; write e.g. http://127.0.0.1:8765")
    if not Path(token_file).expanduser().is_file():
        raise ConfigError(f"token file {token_file} not found; copy the daemon's token there")
    entries = load_executors(project_dir)
    if any(e.name == name for e in entries) and not replace:
        raise ConfigError(f"executor {name!r} exists; pass --replace to change it")
    entry = ExecutorEntry(name, url.rstrip("/"), token_file)
    _write(project_dir, [e for e in entries if e.name != name] + [entry])
    return entry


def remove_executor(project_dir: Path, name: str) -> None:
    entries = load_executors(project_dir)
    if not any(e.name == name for e in entries):
        raise ConfigError(f"no executor {name!r}; see `annealplan executors list`")
    _write(project_dir, [e for e in entries if e.name != name])


@contextlib.asynccontextmanager
async def open_clients(project_dir: Path, *, only: str | None = None) -> AsyncIterator[list]:
    """Clients for the registered executors, or for an embedded local daemon when none is.

    Args:
        project_dir: the project folder.
        only: a single executor by name.

    Yields:
        ``ExecutorClient`` objects (closed, and the local daemon stopped, on exit).
    """
    from planner.dispatch.client import ExecutorClient, read_token
    from planner.dispatch.local import LocalExecutor

    entries = load_executors(project_dir)
    if only is not None:
        entries = [e for e in entries if e.name == only]
        if not entries and only != "local":
            raise ConfigError(f"no executor {only!r}; see `annealplan executors list`")
    if entries:
        clients = [ExecutorClient(e.url, read_token(e.token_file), name=e.name) for e in entries]
        try:
            yield clients
        finally:
            for c in clients:
                await c.aclose()
        return
    with LocalExecutor(project_dir) as local:
        client = local.client()
        try:
            yield [client]
        finally:
            await client.aclose()
