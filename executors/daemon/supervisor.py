"""The supervisor: one thread that runs the journal's queued jobs as worker processes.

It starts each job as ``python -m executors.worker`` in a new session (its own process
group), at most ``max_jobs`` at a time, and watches them: a cancel request or a worker
that stops beating gets its whole group killed, and a worker's exit is turned into the
job's next state (requeued after a crash, failed after too many). At start-up every job
that is not final is put back in the queue (its stale worker, if one survived a
``kill -9`` of the daemon, is killed first), and its next worker resumes from the last
complete checkpoint. The state folder is locked so that only one daemon supervises it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from executors.anneal import EXIT_FENCED
from executors.daemon.config import DaemonConfig
from executors.journal import Journal, Row
from executors.processes import create_time, kill_process_tree, same_process, with_package_on_path
from executors.protocol import JobState
from executors.stages.context import JobFiles, job_dir
from executors.stages.launch import clean_up_launch
from executors.worker import EXIT_FAILED, EXIT_LOCKED, TOKEN_ENV

LOCK_NAME = "daemon.lock"


class StateDirLocked(Exception):
    """Another live daemon serves the state folder."""


def lock_state_dir(state_dir: Path) -> int:
    """Take the state folder for this process: an exclusive ``flock`` on ``daemon.lock``.

    Two daemons on one journal would each recover and run the same jobs. The lock is held
    by the open descriptor, so it lasts exactly as long as this process (a ``kill -9``
    releases it) and is not inherited by workers (Python opens descriptors close-on-exec).

    Returns:
        The descriptor holding the lock; keep it open for the process lifetime.

    Raises:
        StateDirLocked: another process holds the lock (its pid in the message when known).
    """
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 64).decode(errors="replace").strip()
        os.close(fd)
        who = f" (pid {holder})" if holder.isdigit() else ""
        raise StateDirLocked(
            f"another annealplan-executor{who} already serves the state folder {state_dir}; "
            "stop it first, or give this one its own --state folder"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def job_threads(cfg: DaemonConfig) -> int:
    """CPU threads per job: the configured figure, else the cores shared by ``max_jobs``."""
    if cfg.threads_per_job:
        return max(1, cfg.threads_per_job)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cores or 1) // max(1, cfg.max_jobs))


def worker_command(cfg: DaemonConfig, job_id: str) -> list[str]:
    """The command line of one job's worker (its attempt token goes in the environment)."""
    cmd = [
        sys.executable,
        "-m",
        "executors.worker",
        "--state",
        str(cfg.state_dir),
        "--root",
        str(cfg.root),
        "--job-id",
        job_id,
        "--gpus",
        str(cfg.gpus),
        "--launcher",
        cfg.launcher,
        "--heartbeat-timeout",
        str(cfg.heartbeat_timeout_s),
    ]
    if cfg.hostfile is not None:
        cmd += ["--hostfile", str(cfg.hostfile)]
    if cfg.peak_flops:
        cmd += ["--peak-flops", str(cfg.peak_flops)]
    for p in cfg.plugins:
        cmd += ["--plugin", p]
    return cmd


@dataclass
class _Running:
    proc: subprocess.Popen[bytes]
    token: str
    cancel_sent_at: float | None = None


class Supervisor:
    """Starts workers for queued jobs and watches them; one thread."""

    def __init__(self, cfg: DaemonConfig, journal: Journal) -> None:
        self.cfg = cfg
        self.journal = journal
        self.running: dict[str, _Running] = {}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        self.recover()
        self._thread = threading.Thread(target=self._loop, name="supervisor", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        """Stop the loop; kill running workers and requeue their jobs (they resume later)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        for job_id, run in list(self.running.items()):
            self._kill(job_id, run.proc.pid)
            with contextlib.suppress(Exception):
                run.proc.wait(timeout=5)
            self.journal.requeue(job_id, cause="daemon stopped", crashed=False)
        self.running.clear()

    def recover(self) -> None:
        """Start-up: every non-final job goes back to the queue; stale workers are killed."""
        for row in self.journal.active_rows():
            if row.pid is not None and same_process(row.pid, row.pid_started):
                self._kill(row.job_id, row.pid)
            if row.cancel_requested:
                self.journal.cancelled(row.job_id, "cancelled before a restart")
            elif row.state is not JobState.QUEUED:
                self.journal.requeue(row.job_id, cause="daemon restarted", crashed=False)

    def _loop(self) -> None:
        while not self._stop.is_set():
            if self._orphaned():
                # The program that started us is gone: shut down as on SIGTERM (running
                # jobs are stopped and requeued; they resume when a daemon serves again).
                print(
                    f"the parent process {self.cfg.parent_pid} is gone; shutting down",
                    file=sys.stderr,
                    flush=True,
                )
                os.kill(os.getpid(), signal.SIGTERM)
                return
            try:
                self.tick()
            except Exception as e:  # the supervisor must outlive one bad tick
                print(f"supervisor: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
            self._wake.wait(self.cfg.poll_s)
            self._wake.clear()

    def _orphaned(self) -> bool:
        # A child whose parent died is re-parented (to init or a subreaper).
        return self.cfg.parent_pid is not None and os.getppid() != self.cfg.parent_pid

    # -- one pass ------------------------------------------------------------------------

    def tick(self) -> None:
        """One pass: reap finished workers, act on cancels and stalls, start queued jobs."""
        for job_id, run in list(self.running.items()):
            code = run.proc.poll()
            row = self.journal.row(job_id)
            if code is None:
                self._watch(job_id, run, row)
            else:
                del self.running[job_id]
                self._reaped(job_id, code, row)
        self._start_queued()

    def _watch(self, job_id: str, run: _Running, row: Row | None) -> None:
        """A running worker: kill it on a cancel request, or fail the job when it stalled."""
        if row is None:
            return
        if row.cancel_requested and run.cancel_sent_at is None:
            run.cancel_sent_at = time.time()
            kill_process_tree(run.proc.pid, grace_s=self.cfg.cancel_grace_s, whole_group=True)
        elif self._stalled(row):
            # The worker itself stopped beating (SIGSTOP, a hung import…): its own
            # watchdog cannot report that, so the supervisor does.
            silent = time.time() - (row.heartbeat_at or 0.0)
            kill_process_tree(run.proc.pid, grace_s=self.cfg.cancel_grace_s, whole_group=True)
            self.journal.fail(
                job_id,
                "stalled",
                f"the worker sent no heartbeat for {silent:.0f} s (limit "
                f"{self.cfg.heartbeat_timeout_s:.0f} s); it was killed",
            )

    def _start_queued(self) -> None:
        slots = self.cfg.max_jobs - len(self.running)
        if slots <= 0:
            return
        for row in self.journal.active_rows():
            if slots <= 0:
                break
            if row.state is not JobState.QUEUED or row.job_id in self.running:
                continue
            token = self.journal.claim(row.job_id)
            if token is None:
                continue
            self._spawn(row.job_id, token)
            slots -= 1

    def _stalled(self, row: Row) -> bool:
        # The worker beats every 2 s; by default allow the trainer's own (longer) limit plus
        # slack, since a beat can wait on a busy journal (SQLite's 30 s busy timeout).
        limit = self.cfg.worker_stall_s or self.cfg.heartbeat_timeout_s + 30.0
        return row.heartbeat_at is not None and time.time() - row.heartbeat_at > limit

    def _reaped(self, job_id: str, code: int, row: Row | None) -> None:
        # a worker killed with its trainers (cancel, stall) left their shared-memory
        # buffers behind
        clean_up_launch(job_dir(self.cfg.state_dir, job_id))
        if row is None or row.state.final:
            return
        if row.cancel_requested:
            self.journal.cancelled(job_id, "cancelled on request")
            return
        if code == EXIT_FENCED:
            return  # a newer attempt owns the job
        if code == EXIT_LOCKED:
            self.journal.requeue(job_id, cause="locked by an older attempt", crashed=False)
            return
        if code in (0, EXIT_FAILED):
            # The worker wrote its final state, unless its write was lost: count it a crash.
            code = -1 if code == 0 else code
        if row.crashes >= self.cfg.max_crashes:
            self.journal.fail(
                job_id,
                "crashed",
                f"the worker exited with code {code} {row.crashes + 1} times; "
                f"see GET /v1/jobs/{job_id}/log",
            )
        else:
            self.journal.requeue(job_id, cause=f"worker exited with code {code}", crashed=True)

    def _kill(self, job_id: str, pid: int) -> None:
        """Kill a worker's whole session and clean up after its launch."""
        kill_process_tree(pid, grace_s=self.cfg.cancel_grace_s, whole_group=True)
        clean_up_launch(job_dir(self.cfg.state_dir, job_id))

    def _spawn(self, job_id: str, token: str) -> None:
        files = JobFiles(job_dir(self.cfg.state_dir, job_id))
        files.folder.mkdir(parents=True, exist_ok=True)
        env = with_package_on_path(dict(os.environ))
        env[TOKEN_ENV] = token  # through the environment so it never shows in `ps`
        threads = str(job_threads(self.cfg))
        env["OMP_NUM_THREADS"] = threads
        env["MKL_NUM_THREADS"] = threads
        with files.log.open("ab") as log:
            log.write(f"--- attempt {token[:8]} at {time.ctime()} ---\n".encode())
            log.flush()
            proc = subprocess.Popen(
                worker_command(self.cfg, job_id),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=str(self.cfg.root),
                start_new_session=True,  # its own process group: cancel kills the whole tree
            )
        self.running[job_id] = _Running(proc, token)
        started = create_time(proc.pid)
        self.journal.set_pid(job_id, token, proc.pid, started or time.time())
