"""The ``local`` executor backend: the embedded default, a daemon on 127.0.0.1 that the
planner starts itself, rooted at the project folder (its state under
``.annealplan/executor``). Dispatch uses it when ``executors.toml`` registers no executor;
an entry may also name it::

    [executors.here]
    backend = "local"
    max_jobs = 2

Connecting starts the daemon and waits until it listens; closing the submitter stops it
(running jobs are requeued by its journal and resume at the next start). The launcher and
the transport are imported when a backend connects, so loading the plugins stays cheap.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from plugins.contract import BackendSettings, ExecutorBackend
from plugins.hookspecs import hookimpl

if TYPE_CHECKING:
    from plugins.backends.local.launcher import LocalClient


class LocalSettings(BackendSettings):
    """Settings of the ``local`` backend."""

    max_jobs: int = Field(default=1, ge=1)
    """Jobs the daemon runs at once."""
    root: str | None = None
    """The folder jobs may read and write (default: the project folder)."""
    port: int | None = Field(default=None, ge=1, le=65535)
    """The port to listen on (default: any free one)."""
    start_timeout_s: float = Field(default=60.0, gt=0)
    """How long to wait for the daemon to listen."""
    launcher: Literal["deepspeed", "torchrun"] = "deepspeed"
    """What starts each trainer (the DeepSpeed engine either way). ``torchrun`` starts one
    Python process fewer per job, which is most of a small job's start-up on a CPU."""


class LocalBackend(ExecutorBackend):
    name = "local"
    description = "a daemon on 127.0.0.1 started by the planner (the embedded default)"
    Settings = LocalSettings

    def where(self, settings: BackendSettings) -> str:
        return "127.0.0.1 (started by the planner)"

    def connect(
        self,
        settings: BackendSettings,
        *,
        name: str,
        project_dir: Path,
        retries: int | None = None,
    ) -> LocalClient:
        from plugins.backends.local.launcher import LocalClient, LocalExecutor

        assert isinstance(settings, LocalSettings)
        root = settings.root
        launcher = LocalExecutor(
            project_dir,
            root=(Path(project_dir) / Path(root).expanduser()) if root else None,
            start_timeout_s=settings.start_timeout_s,
            port=settings.port,
            max_jobs=settings.max_jobs,
            extra_args=("--launcher", settings.launcher),
        ).start()
        knobs = {} if retries is None else {"retries": retries}
        try:
            return LocalClient(launcher, name=name, **knobs)
        except BaseException:
            launcher.stop()
            raise


@hookimpl
def register_executor_backends(register: Callable[[ExecutorBackend], None]) -> None:
    register(LocalBackend())
