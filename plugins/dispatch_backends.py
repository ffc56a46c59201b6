"""The built-in executor backends, registered through the same hook as third-party ones.

- ``http``: a daemon somewhere (``annealplan-executor serve``), reached with an
  :class:`~planner.dispatch.client.ExecutorClient`; settings ``url`` and ``token_file``.
- ``local``: the embedded default, a loopback daemon the planner starts itself; settings
  ``project_dir`` (its root and state live there). ``connect`` returns the
  :class:`~planner.dispatch.local.LocalExecutor`; use it as a context manager and call
  ``client()``.

The dispatcher is imported only when a backend connects, so loading plugins stays cheap.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from plugins.contract import ExecutorBackend
from plugins.hookspecs import hookimpl


class HttpBackend(ExecutorBackend):
    name = "http"
    description = "an executor daemon over HTTP (bearer token, retries that reuse job ids)"

    def connect(self, settings: Mapping[str, Any]) -> Any:
        from planner.dispatch.client import ExecutorClient, read_token
        from plugins.errors import ConfigError

        url, token_file = settings.get("url"), settings.get("token_file")
        if not url or not token_file:
            raise ConfigError("the http executor backend needs url and token_file")
        return ExecutorClient(str(url), read_token(str(token_file)), name=settings.get("name", ""))


class LocalBackend(ExecutorBackend):
    name = "local"
    description = "a daemon on 127.0.0.1 started by the planner (the embedded default)"

    def connect(self, settings: Mapping[str, Any]) -> Any:
        from pathlib import Path

        from planner.dispatch.local import LocalExecutor

        return LocalExecutor(Path(settings.get("project_dir") or Path.cwd()))


@hookimpl
def register_executor_backends(register: Callable[[ExecutorBackend], None]) -> None:
    register(HttpBackend())
    register(LocalBackend())
