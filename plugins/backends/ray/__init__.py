"""The ``ray`` executor backend: each anneal is one Ray job (Ray's Jobs API).

Its settings in ``executors.toml``::

    [executors.ray1]
    backend = "ray"
    address = "http://127.0.0.1:8265"   # the head's dashboard (an SSH tunnel to it)
    root = "/data/annealplan"           # the folder jobs read and write on the Ray nodes
    gpus = 1                            # GPUs per job (one node per job)

``annealplan executors add ray1 --backend ray --address http://127.0.0.1:8265 --root
/data/annealplan --gpus 1`` writes it, after checking that Ray is installed here
(``pip install 'annealplan[ray]'``) and that the head answers. A job is one
``submit_job`` whose submission id is the job's id, whose entry point runs the daemon's
stages (:mod:`executors.batch`) and whose ``runtime_env`` points at this project's code:
the planner's ``executors`` and ``plugins`` packages travel as ``py_modules``, so the
nodes run the code the planner speaks, with the job's spec in an environment variable.
Status, logs and cancel are Ray's own (``get_job_info``, ``get_job_logs``,
``stop_job``); the job's record and result come back in its log, so the planner needs
no filesystem shared with the nodes (:mod:`plugins.backends.ray.submitter`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from pydantic import Field, field_validator

from plugins.backends.ray.client import job_client
from plugins.contract import BackendSettings, ExecutorBackend
from plugins.errors import ConfigError
from plugins.hookspecs import hookimpl

if TYPE_CHECKING:
    from plugins.backends.ray.submitter import RaySubmitter


class RaySettings(BackendSettings):
    """Settings of the ``ray`` backend."""

    address: str
    """The Ray head's dashboard URL, e.g. http://127.0.0.1:8265 (through an SSH tunnel)."""
    root: str
    """The folder jobs read and write on the Ray nodes: the jobs' paths (base model, data,
    task folders) are relative to it."""
    gpus: int = Field(default=0, ge=0)
    """GPUs per job (all on one node); 0: a CPU job with one training process."""
    cpus: float = Field(default=1.0, gt=0)
    """CPUs Ray reserves for each job."""
    python: str = "python3"
    """The Python that runs the job on the nodes."""
    state: str | None = None
    """Where the job folders go on the nodes (default: ``<root>/.annealplan/<executor name>``)."""
    upload_code: bool = True
    """Send this planner's ``executors`` and ``plugins`` packages with each job
    (``py_modules``); False: use the annealplan installed on the nodes."""
    runtime_env: dict[str, Any] = Field(default_factory=dict)
    """More of Ray's ``runtime_env`` (``env_vars``, ``pip``, ``conda``…), merged in."""

    @field_validator("address")
    @classmethod
    def _no_trailing_slash(cls, value: str) -> str:
        return value.rstrip("/")


class RayBackend(ExecutorBackend):
    name = "ray"
    description = "one Ray job per anneal (Ray's Jobs API); results in the job's log"
    Settings = RaySettings

    def check(self, settings: BackendSettings) -> None:
        assert isinstance(settings, RaySettings)
        parsed = urlparse(settings.address)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ConfigError(
                f"ray: address {settings.address!r} is not the head's dashboard URL; pass "
                "--address http://HOST:8265"
            )
        try:
            job_client(settings.address)
        except ConnectionError as e:
            raise ConfigError(
                f"ray: the head at {settings.address} does not answer ({e}); start it "
                "(`ray start --head`) or reach it (an SSH tunnel to port 8265), or fix --address"
            ) from None

    def where(self, settings: BackendSettings) -> str:
        assert isinstance(settings, RaySettings)
        return f"ray {settings.address} under {settings.root}"

    def connect(
        self,
        settings: BackendSettings,
        *,
        name: str,
        project_dir: Path,
        retries: int | None = None,
    ) -> RaySubmitter:
        from plugins.backends.ray.submitter import RaySubmitter

        assert isinstance(settings, RaySettings)
        return RaySubmitter(settings, name=name, project_dir=project_dir)


@hookimpl
def register_executor_backends(register: Callable[[ExecutorBackend], None]) -> None:
    register(RayBackend())
