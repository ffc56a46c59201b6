"""The ``slurm`` executor backend: each anneal is one Slurm batch job.

Its settings in ``executors.toml``::

    [executors.hpc]
    backend = "slurm"
    root = "/shared/annealplan"      # a folder every node and the planner see
    partition = "gpu"
    nodes = 1
    gpus_per_node = 8
    account = "my-lab"               # optional
    time = "04:00:00"                # optional
    setup = "module load cuda; source /shared/venv/bin/activate"

``annealplan executors add hpc --backend slurm --root /shared/annealplan --partition gpu
--gpus-per-node 8`` writes it, after checking that Slurm's commands are here, that the
partition exists and that the root is a folder. The batch job runs the daemon's stages
(:mod:`executors.batch`), so its job's paths (base model, data, task folders) are relative
to ``root``; several nodes get DeepSpeed's hostfile from the allocation's node list.
Status, logs and cancel are Slurm's own ``squeue``, ``--output`` file and ``scancel``;
results come back through the shared folder (:mod:`plugins.backends.slurm.submitter`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field

from plugins.backends import scheduled
from plugins.contract import BackendSettings, ExecutorBackend
from plugins.errors import ExecutorReplyError
from plugins.hookspecs import hookimpl

if TYPE_CHECKING:
    from executors.protocol import AnnealJobSpec
    from plugins.backends.slurm.submitter import SlurmSubmitter


class SlurmSettings(BackendSettings):
    """Settings of the ``slurm`` backend."""

    root: str
    """A folder on the filesystem the cluster shares: the jobs' paths are relative to it,
    and their results come back under it (the planner must see it at the same path)."""
    partition: str | None = None
    """The partition to submit to (default: the cluster's default partition)."""
    nodes: int = Field(default=1, ge=1)
    """Nodes per job; more than one trains across them with DeepSpeed's hostfile."""
    gpus_per_node: int = Field(default=0, ge=0)
    """GPUs per node (``--gpus-per-node``); 0: a CPU job with one training process."""
    cpus_per_task: int | None = Field(default=None, ge=1)
    """CPUs per job and node (``--cpus-per-task``)."""
    account: str | None = None
    """The account to charge (``--account``)."""
    time: str | None = None
    """The time limit (``--time``, e.g. 04:00:00)."""
    setup: str | None = None
    """Shell lines run before the job, e.g. ``module load cuda; source .venv/bin/activate``."""
    python: str = "python3"
    """The Python that runs the job on the nodes (after ``setup``)."""
    state: str | None = None
    """Where the job folders go (default: ``<root>/.annealplan/<executor name>``)."""
    bin_dir: str | None = None
    """The folder holding Slurm's commands (default: found on PATH)."""
    sbatch_args: list[str] = Field(default_factory=list)
    """More ``sbatch`` options, e.g. ``["--qos=high", "--mem=200G"]``."""


class SlurmBackend(ExecutorBackend):
    name = "slurm"
    description = "one Slurm batch job per anneal; results through the cluster's shared folder"
    Settings = SlurmSettings

    def check(self, settings: BackendSettings) -> None:
        from plugins.backends.slurm.commands import Slurm
        from plugins.backends.slurm.submitter import check_cluster

        assert isinstance(settings, SlurmSettings)
        check_cluster(settings, Slurm(settings.bin_dir))

    def where(self, settings: BackendSettings) -> str:
        assert isinstance(settings, SlurmSettings)
        return f"slurm partition {settings.partition or '(default)'} under {settings.root}"

    def connect(
        self,
        settings: BackendSettings,
        *,
        name: str,
        project_dir: Path,
        retries: int | None = None,
    ) -> SlurmSubmitter:
        from plugins.backends.slurm.submitter import SlurmSubmitter

        assert isinstance(settings, SlurmSettings)
        root = Path(settings.root).expanduser()
        state = scheduled.state_dir(root, settings.state, name)

        def check_admission(spec: AnnealJobSpec) -> None:
            # the daemon's admission: the root is the nodes' and the planner's alike, so
            # a job that would fail for certain is refused here, before sbatch
            from executors.admission import Refused, admit

            try:
                admit(spec, root.resolve(), deny=(state.resolve(),))
            except Refused as e:
                raise ExecutorReplyError(
                    f"executor {name}: {e.message} ({e.field})",
                    status=422,
                    code=e.code,
                    field=e.field,
                ) from None

        return SlurmSubmitter(settings, name=name, state=state, admit=check_admission)


@hookimpl
def register_executor_backends(register: Callable[[ExecutorBackend], None]) -> None:
    register(SlurmBackend())
