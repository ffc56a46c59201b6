"""Slurm's own commands, as the ``slurm`` backend calls them: ``sinfo``, ``sbatch
--parsable``, ``squeue`` and ``scancel``. Nothing here schedules anything; it only runs
the commands and reads their output.

A command that is missing, or a controller that does not answer, is told apart from a
refusal: :class:`SlurmUnavailable` for the first two (try again later, or fix PATH),
:class:`SlurmRefused` when Slurm answered no (an invalid partition, an account).
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

#: seconds one command may take (a controller that is down makes them retry for a minute)
TIMEOUT_S = 30.0

#: squeue states of a job that still runs or may run (anything else: it ended)
ALIVE = frozenset(
    {
        "PENDING",
        "CONFIGURING",
        "RUNNING",
        "COMPLETING",
        "SUSPENDED",
        "REQUEUED",
        "REQUEUE_HOLD",
        "REQUEUE_FED",
        "RESIZING",
        "SIGNALING",
        "STAGE_OUT",
        "STOPPED",
        "RESV_DEL_HOLD",
        "POWER_UP_NODE",
    }
)


class SlurmUnavailable(Exception):
    """A command is missing, timed out, or could not reach the controller."""


class SlurmRefused(Exception):
    """Slurm answered and refused (the message is Slurm's own)."""


class SlurmMissing(SlurmUnavailable):
    """A Slurm command is not installed where it is looked for."""


@dataclass(frozen=True, slots=True)
class JobInfo:
    """One job as ``squeue`` shows it."""

    slurm_id: str
    state: str
    reason: str

    @property
    def alive(self) -> bool:
        return self.state in ALIVE


@dataclass(frozen=True, slots=True)
class Slurm:
    """Slurm's commands, found in ``bin_dir`` (None: on PATH)."""

    bin_dir: str | None = None

    def which(self, command: str) -> str:
        """The command's path.

        Raises:
            SlurmMissing: it is not installed there.
        """
        path = str(Path(self.bin_dir).expanduser()) if self.bin_dir else None
        found = shutil.which(command, path=path)
        if found is None:
            where = f"in {self.bin_dir}" if self.bin_dir else "on PATH"
            raise SlurmMissing(f"{command} is not {where}")
        return found

    def _run(self, command: str, *args: str) -> str:
        exe = self.which(command)
        try:
            out = subprocess.run(
                [exe, *args],
                capture_output=True,
                text=True,
                timeout=TIMEOUT_S,
                stdin=subprocess.DEVNULL,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise SlurmUnavailable(
                f"{command} did not answer within {TIMEOUT_S:.0f} s (is the controller up?)"
            ) from None
        except OSError as e:
            raise SlurmUnavailable(f"{command} could not run: {e.strerror}") from None
        if out.returncode != 0:
            message = " ".join(out.stderr.split()) or f"{command} exited with {out.returncode}"
            if _unreachable(message):
                raise SlurmUnavailable(f"{command}: {message}")
            raise SlurmRefused(message)
        return out.stdout

    def partitions(self) -> list[str]:
        """The cluster's partitions (the default one first when ``sinfo`` marks it)."""
        names = []
        for line in self._run("sinfo", "--noheader", "--format=%P").split():
            name = line.strip().rstrip("*")
            if name and name not in names:
                names.append(name)
        return names

    def submit(self, script: Path, args: list[str]) -> str:
        """``sbatch --parsable ARGS SCRIPT``: the new job's id."""
        out = self._run("sbatch", "--parsable", *args, str(script))
        return out.strip().split(";", 1)[0]

    def jobs(self, slurm_ids: list[str]) -> dict[str, JobInfo]:
        """Jobs by id as ``squeue`` knows them (ended ones stay for ``MinJobAge``); an id
        missing from the answer is unknown to the controller now."""
        if not slurm_ids:
            return {}
        try:
            out = self._run(
                "squeue",
                "--noheader",
                "--states=all",
                f"--jobs={','.join(slurm_ids)}",
                "--format=%i|%T|%r",
            )
        except SlurmRefused as e:
            if "invalid job id" in str(e).lower():
                return {}
            raise
        return _parse_jobs(out)

    def named(self, name: str) -> list[str]:
        """Ids of this user's jobs named ``name`` (any state ``squeue`` still shows)."""
        out = self._run(
            "squeue", "--me", "--noheader", "--states=all", f"--name={name}", "--format=%i"
        )
        return [line.strip() for line in out.splitlines() if line.strip()]

    def cancel(self, slurm_id: str) -> None:
        """``scancel ID`` (a job that already ended is not an error)."""
        try:
            self._run("scancel", slurm_id)
        except SlurmRefused as e:
            if "already completing or completed" not in str(e) and "invalid job id" not in (
                str(e).lower()
            ):
                raise


def _parse_jobs(text: str) -> dict[str, JobInfo]:
    found = {}
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) == 3 and parts[0]:
            # an array or het job's steps are "id_n"/"id+n": the batch job is the plain id
            found[parts[0]] = JobInfo(parts[0], parts[1].strip().upper(), parts[2].strip())
    return found


def _unreachable(message: str) -> bool:
    text = message.lower()
    return any(
        hint in text
        for hint in (
            "unable to contact slurm controller",
            "connection refused",
            "socket timed out",
            "unable to process configuration file",
            "communication connection failure",
            "zero bytes were transmitted",
        )
    )
