"""The ``http`` executor backend: an executor daemon (``annealplan-executor serve``) reached
over HTTP with a bearer token.

Its settings in ``executors.toml`` (``backend = "http"`` is the default)::

    [executors.gpu1]
    backend = "http"
    url = "http://127.0.0.1:8765"
    token_file = "~/.annealplan/gpu1.token"

Only the token *file* is stored, never the token; it is read at each connection. The
transport, :class:`plugins.backends.http.client.ExecutorClient`, is imported when a
backend connects, so loading the plugins does not load httpx.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from pydantic import field_validator

from plugins.contract import BackendSettings, ExecutorBackend
from plugins.errors import ConfigError
from plugins.hookspecs import hookimpl

if TYPE_CHECKING:
    from plugins.backends.http.client import ExecutorClient


class HttpSettings(BackendSettings):
    """Settings of the ``http`` backend."""

    url: str
    """The daemon's URL, e.g. http://127.0.0.1:8765 (through an SSH tunnel)."""
    token_file: str
    """A file holding the daemon's bearer token (read at each use, never copied)."""

    @field_validator("url")
    @classmethod
    def _no_trailing_slash(cls, value: str) -> str:
        return value.rstrip("/")


class HttpBackend(ExecutorBackend):
    name = "http"
    description = "an executor daemon over HTTP (bearer token, retries that reuse job ids)"
    Settings = HttpSettings

    def check(self, settings: BackendSettings) -> None:
        assert isinstance(settings, HttpSettings)
        parsed = urlparse(settings.url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ConfigError(
                f"{settings.url!r} is not an http(s) URL; write e.g. http://127.0.0.1:8765"
            )
        if not Path(settings.token_file).expanduser().is_file():
            raise ConfigError(
                f"token file {settings.token_file} not found; copy the daemon's token there"
            )

    def where(self, settings: BackendSettings) -> str:
        assert isinstance(settings, HttpSettings)
        return settings.url

    def describe(self, settings: BackendSettings) -> str:
        assert isinstance(settings, HttpSettings)
        return f"{settings.url:<32} {settings.token_file}"

    def connect(
        self,
        settings: BackendSettings,
        *,
        name: str,
        project_dir: Path,
        retries: int | None = None,
    ) -> ExecutorClient:
        from plugins.backends.http.client import ExecutorClient, read_token

        assert isinstance(settings, HttpSettings)
        knobs = {} if retries is None else {"retries": retries}
        return ExecutorClient(settings.url, read_token(settings.token_file), name=name, **knobs)


@hookimpl
def register_executor_backends(register: Callable[[ExecutorBackend], None]) -> None:
    register(HttpBackend())
