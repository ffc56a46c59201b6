"""The stages' records, read back from the job folder: typed, so a bad file says so.

Each record is written by one stage and read by the next, possibly by a later attempt of
the job (after a crash, a restart of the daemon, or an upgrade): the manifest of the
packed data (``data/manifest.json``), the trainer's plan (``anneal.json``) and the final
model's ``train_state.json``. Their JSON is the same as when they were plain dicts, so
files written before still read. A record that cannot be read (truncated, edited, written
by an incompatible version) raises :class:`RecordUnreadable`, and the stage that owns it
runs again from a clean folder instead of using it.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from executors.protocol import CurationSpent


class RecordUnreadable(Exception):
    """A stage record is missing fields, is not JSON, or holds values of the wrong type."""


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @classmethod
    def read(cls, path: Path) -> Self:
        """Read and validate a record.

        Raises:
            RecordUnreadable: the file cannot be read or is not a valid record (the first
                problem named).
        """
        try:
            return cls.model_validate_json(path.read_bytes())
        except OSError as e:
            raise RecordUnreadable(f"cannot read {path}: {e.strerror}") from None
        except ValidationError as e:
            first = e.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "the file"
            raise RecordUnreadable(
                f"{path} is not a valid record: {where}: {first['msg']}"
            ) from None

    def write(self, path: Path, *, indent: int | None = None) -> None:
        """Write the record as JSON (the caller makes it atomic: a folder renamed, a marker)."""
        path.write_text(self.model_dump_json(indent=indent))


class Manifest(_Record):
    """The packed training data: ``data/train.npy`` and what it cost to make."""

    data_hash: str
    """sha256 over the packed array's shape and bytes."""
    sequences: int = Field(ge=0)
    seq_len: int = Field(ge=1)
    curation: list[CurationSpent]
    """Curation measured per part (source, replay)."""


class TrainPlan(_Record):
    """What the trainer (``executors/anneal.py``) is told: paths, batch, steps, DeepSpeed."""

    job_id: str
    attempt_token: str
    journal: Path | None
    """The journal that fences the attempt's checkpoints; None: no fencing (a bench)."""
    job_dir: Path
    ckpt_dir: Path
    final_dir: Path
    heartbeat: Path
    data: Path
    model: Path
    tokenizer: Path
    micro_batch: int = Field(ge=1)
    grad_accum: int = Field(ge=1)
    total_steps: int = Field(ge=1)
    seed: int
    checkpoint_every: int = Field(ge=1)
    ds_config: dict[str, Any]
    peak_flops: float | None = None
    """Per-GPU peak FLOP/s, for MFU."""
    dist_backend: str | None = None
    """torch.distributed's backend; None: DeepSpeed's choice for the accelerator."""

    @field_validator("journal", mode="before")
    @classmethod
    def _no_journal(cls, value: Any) -> Any:
        return None if value == "" else value


class TrainState(_Record):
    """The final model's training facts, written by the trainer beside the weights."""

    params: int
    steps: int
    steps_this_run: int
    resumed_from: int
    training_tokens: int
    tokens_per_s: float | None
    train_seconds: float
    world_size: int = 1
    checkpoint_hash: str
    mfu: float | None = None


def record_train_seconds(ledger: Path, attempt: str, seconds: float) -> None:
    """Write down how long this attempt has trained so far (replacing its last figure).

    The trainer calls it about once a second and at the end, so an attempt that is killed
    or crashes still leaves its time (but for the last second): the job's total training
    time (:func:`total_train_seconds`) counts every attempt, not only the one that finished.

    Args:
        ledger: the job's ledger folder (``JobFiles.train_seconds``).
        attempt: the attempt's token (a name of its own).
        seconds: training seconds of this attempt so far.
    """
    ledger.mkdir(parents=True, exist_ok=True)
    path = ledger / (attempt or "attempt")
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(f"{seconds:.3f}\n")
    os.replace(tmp, path)


def total_train_seconds(ledger: Path) -> float:
    """Training seconds of every attempt of a job (0.0 when none was written down)."""
    total = 0.0
    if ledger.is_dir():
        for f in ledger.iterdir():
            if f.suffix != ".tmp":
                with contextlib.suppress(OSError, ValueError):
                    total += max(0.0, float(f.read_text()))
    return total
