"""One attempt of one job under the daemon's journal: ``python -m executors.worker``.

The daemon starts the worker in a new session (its own process group) with the job's
attempt token; the launcher and its trainers inherit the group, so cancelling kills them
all with one ``killpg``. The stages themselves (:mod:`executors.stages`) are resumable
and know nothing of the journal; this module fences them: the per-job lock file
(``flock``) plus the attempt token fence every write, so two attempts of one job never
train at once, and a stale attempt's writes change nothing.

Exit codes: 0 done (result in the journal), 3 failed for good (error in the journal, no
retry), 75 locked by another live attempt, 76 fenced (a newer attempt owns the job), anything
else a crash that the daemon may retry.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from pathlib import Path

import click

from executors.anneal import EXIT_FENCED
from executors.journal import Journal
from executors.paths import PathRefused
from executors.protocol import JobState, Progress
from executors.stages.context import (
    JOURNAL_NAME,
    Fenced,
    JobFailed,
    WorkerConfig,
    job_dir,
)
from executors.stages.launch import (
    SHM_BUFFER,
    SHM_DIR,
    clean_up_launch,
    ds_config,
)
from executors.stages.pipeline import run_stages

EXIT_FAILED = 3
EXIT_LOCKED = 75
#: the environment variable that carries the attempt token (never the command line: `ps`)
TOKEN_ENV = "ANNEALPLAN_ATTEMPT_TOKEN"
#: seconds between the worker's own journal heartbeats
BEAT_S = 2.0
#: the least time between two progress writes to the journal (the last step always goes)
PROGRESS_EVERY_S = 0.5

__all__ = [
    "EXIT_FAILED",
    "EXIT_FENCED",
    "EXIT_LOCKED",
    "JOURNAL_NAME",
    "SHM_BUFFER",
    "SHM_DIR",
    "TOKEN_ENV",
    "WorkerConfig",
    "clean_up_launch",
    "ds_config",
    "job_dir",
    "main",
    "run",
]


def run(cfg: WorkerConfig) -> int:
    """Run one attempt; see the module docstring for exit codes."""
    cfg.job_dir.mkdir(parents=True, exist_ok=True)
    lock_fd = os.open(cfg.files.lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print("another attempt of this job still holds its lock", flush=True)
        return EXIT_LOCKED
    journal = Journal(cfg.journal_path)
    if not journal.token_is_current(cfg.job_id, cfg.token):
        print("attempt token is stale; exiting", flush=True)
        return EXIT_FENCED
    spec = journal.spec(cfg.job_id)
    assert spec is not None
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(BEAT_S):
            journal.heartbeat(cfg.job_id, cfg.token)

    threading.Thread(target=beat, daemon=True).start()
    try:
        result = run_stages(
            spec,
            cfg,
            enter=lambda stage: journal.advance(cfg.job_id, cfg.token, stage),
            on_progress=_progress_writer(journal, cfg),
        )
        if not journal.finish(cfg.job_id, JobState.SUCCEEDED, token=cfg.token, result=result):
            return EXIT_FENCED
        print(f"job {cfg.job_id} succeeded", flush=True)
        return 0
    except Fenced as e:
        print(f"{e}; exiting", flush=True)
        return EXIT_FENCED
    except PathRefused as e:
        journal.fail(cfg.job_id, "path_refused", f"{e.field}: {e.message}", token=cfg.token)
        return EXIT_FAILED
    except JobFailed as e:
        print(f"job failed: {e.code}: {e.message}", flush=True)
        journal.fail(cfg.job_id, e.code, e.message, token=cfg.token)
        return EXIT_FAILED
    finally:
        stop.set()


def _progress_writer(journal: Journal, cfg: WorkerConfig):
    """The progress callback: a journal heartbeat with progress, at most every 0.5 s."""
    last_write = 0.0

    def write(progress: Progress) -> None:
        nonlocal last_write
        now = time.time()
        if now - last_write >= PROGRESS_EVERY_S or progress.step == progress.total_steps:
            journal.heartbeat(cfg.job_id, cfg.token, progress)
            last_write = now

    return write


@click.command(
    name="executors.worker",
    context_settings={"help_option_names": ["-h", "--help"]},
    help="Run one attempt of one executor job.",
)
@click.option("--state", "state_dir", required=True, type=click.Path(path_type=Path))
@click.option("--root", required=True, type=click.Path(path_type=Path))
@click.option("--job-id", required=True)
@click.option("--token-env", default=TOKEN_ENV, show_default=True)
@click.option("--gpus", type=int, default=1)
@click.option("--hostfile", type=click.Path(path_type=Path))
@click.option("--launcher", type=click.Choice(["deepspeed", "torchrun"]), default="deepspeed")
@click.option("--heartbeat-timeout", type=float, default=120.0)
@click.option("--peak-flops", type=float)
@click.option("--plugin", "plugins", multiple=True)
def cli(
    state_dir: Path,
    root: Path,
    job_id: str,
    token_env: str,
    gpus: int,
    hostfile: Path | None,
    launcher: str,
    heartbeat_timeout: float,
    peak_flops: float | None,
    plugins: tuple[str, ...],
) -> None:
    cfg = WorkerConfig(
        state_dir=state_dir.resolve(),
        root=root.resolve(),
        job_id=job_id,
        # The token comes through the environment so it never shows in `ps`.
        token=os.environ.pop(token_env, ""),
        gpus=gpus,
        hostfile=hostfile,
        launcher=launcher,
        heartbeat_timeout_s=heartbeat_timeout,
        peak_flops=peak_flops,
        plugins=plugins,
    )
    raise SystemExit(run(cfg))


def main(argv: list[str] | None = None) -> None:
    """``python -m executors.worker``: exits with :func:`run`'s code."""
    cli.main(args=argv, prog_name="python -m executors.worker")


if __name__ == "__main__":
    main()
