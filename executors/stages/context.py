"""What a stage is given (the worker's configuration, the job folder) and how it stops early."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

#: the journal file in the state folder
JOURNAL_NAME = "journal.sqlite3"
#: the file in a job folder that names its current launch's master port
MASTER_PORT_FILE = "master_port"


class JobFailed(Exception):
    """A failure that retrying cannot fix (bad data, bad config, stalled trainer)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Fenced(Exception):
    """A newer attempt owns the job: this one stops and writes nothing more."""


def job_dir(state_dir: Path, job_id: str) -> Path:
    """The folder of job ``job_id`` under the state folder."""
    return state_dir / "jobs" / job_id


@dataclass(frozen=True, slots=True)
class JobFiles:
    """Where one job keeps its files; every stage and the daemon name them through here."""

    folder: Path

    @property
    def log(self) -> Path:
        """The job's log: every attempt's output, appended."""
        return self.folder / "log.txt"

    @property
    def lock(self) -> Path:
        """The per-job ``flock`` that keeps two attempts from running at once."""
        return self.folder / ".lock"

    @property
    def data(self) -> Path:
        """The packed data (complete once it holds ``manifest.json``)."""
        return self.folder / "data"

    @property
    def data_work(self) -> Path:
        """Where the data is packed before it is renamed to :attr:`data`."""
        return self.folder / "data.tmp"

    @property
    def manifest(self) -> Path:
        return self.data / "manifest.json"

    @property
    def train_data(self) -> Path:
        return self.data / "train.npy"

    @property
    def plan(self) -> Path:
        """The trainer's plan (``anneal.json``)."""
        return self.folder / "anneal.json"

    @property
    def checkpoints(self) -> Path:
        return self.folder / "ckpt"

    @property
    def final(self) -> Path:
        """The final model (complete once it holds the ``COMPLETE`` marker)."""
        return self.folder / "final"

    @property
    def train_state(self) -> Path:
        return self.final / "train_state.json"

    @property
    def train_seconds(self) -> Path:
        """Each attempt's training seconds, one file per attempt (the job's total time)."""
        return self.folder / "train_seconds"

    @property
    def heartbeat(self) -> Path:
        """Touched by the trainer every second."""
        return self.folder / "heartbeat"

    @property
    def master_port(self) -> Path:
        """The master port of the current launch (for whoever cleans up after it)."""
        return self.folder / MASTER_PORT_FILE

    @property
    def samples(self) -> Path:
        """lm-eval's logged samples."""
        return self.folder / "samples.jsonl"


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    """What one attempt of a job is told: by the daemon's supervisor, a batch job's script,
    or a test running one by hand."""

    state_dir: Path
    root: Path
    job_id: str
    token: str
    gpus: int = 1
    hostfile: Path | None = None
    launcher: str = "deepspeed"
    heartbeat_timeout_s: float = 120.0
    peak_flops: float | None = None
    plugins: tuple[str, ...] = ()

    @property
    def job_dir(self) -> Path:
        return job_dir(self.state_dir, self.job_id)

    @property
    def files(self) -> JobFiles:
        return JobFiles(self.job_dir)

    @property
    def journal_path(self) -> Path:
        return self.state_dir / JOURNAL_NAME
