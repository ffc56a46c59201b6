"""Child processes: their environment, telling a recorded process from a recycled pid,
and killing a process tree.

The daemon's supervisor kills a worker's whole session (cancel, stall, shutdown); a worker
kills its launcher and trainers when they stop beating. Both go through
:func:`kill_process_tree`: one way to stop processes, gracefully first.
"""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

import psutil

#: seconds to wait for processes that were sent SIGKILL to be gone
_REAP_S = 10.0
#: the folder that holds the ``executors`` package (and ``plugins``)
_PACKAGE_PARENT = str(Path(__file__).resolve().parent.parent)


def with_package_on_path(env: dict[str, str]) -> dict[str, str]:
    """``env`` with this checkout first on ``PYTHONPATH``, so a child (a worker, a launcher's
    trainers) imports the same code as its parent, installed or not."""
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_PARENT, env.get("PYTHONPATH")) if p)
    return env


def create_time(pid: int) -> float | None:
    """When ``pid`` started (seconds since the epoch), or None when there is no such process."""
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def same_process(pid: int, started: float | None) -> bool:
    """True when ``pid`` is still the process recorded (not a recycled pid)."""
    now = create_time(pid)
    return now is not None and (started is None or abs(now - started) < 1.0)


def _members(pid: int, *, whole_group: bool) -> list[psutil.Process]:
    found: list[psutil.Process] = []
    with contextlib.suppress(psutil.Error):
        leader = psutil.Process(pid)
        found = [leader, *leader.children(recursive=True)]
    if whole_group:
        # Members that moved out of the tree (re-parented) are still in the group.
        for p in psutil.process_iter():
            with contextlib.suppress(psutil.Error, OSError):
                if os.getpgid(p.pid) == pid and p not in found:
                    found.append(p)
    return found


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def kill_process_tree(pid: int, *, grace_s: float, whole_group: bool = False) -> None:
    """SIGTERM (then SIGCONT) a process and every process below it; SIGKILL what is left
    after ``grace_s``.

    Args:
        pid: the tree's root.
        grace_s: seconds the processes get to exit on SIGTERM (0: kill at once).
        whole_group: ``pid`` leads a process group (a worker started in its own session):
            signal the group too, and kill its members that left the tree. Without it the
            caller's own group (which the tree shares) is left alone.
    """
    members = _members(pid, whole_group=whole_group)
    if whole_group:
        _signal_group(pid, signal.SIGTERM)
    for p in members:
        with contextlib.suppress(psutil.Error):
            p.terminate()
    # A stopped process (SIGSTOP, a debugger, ^Z) only acts on SIGTERM once continued;
    # without this it would sit out the whole grace period and die by SIGKILL.
    if whole_group:
        _signal_group(pid, signal.SIGCONT)
    for p in members:
        with contextlib.suppress(psutil.Error):
            p.resume()
    _, alive = psutil.wait_procs(members, timeout=grace_s)
    if whole_group:
        _signal_group(pid, signal.SIGKILL)
    for p in alive:
        with contextlib.suppress(psutil.Error):
            p.kill()
    psutil.wait_procs(alive, timeout=_REAP_S)
