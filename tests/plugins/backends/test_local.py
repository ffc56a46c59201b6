"""The embedded local executor never outlives the planner that started it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[3]


def test_the_local_daemon_exits_when_its_planner_is_killed(tmp_path: Path):
    script = textwrap.dedent(
        f"""
        import time
        from plugins.backends.local.launcher import LocalExecutor
        ex = LocalExecutor({str(tmp_path)!r}).start()
        print(ex.proc.pid, flush=True)
        time.sleep(600)
        """
    )
    planner = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        daemon_pid = int(planner.stdout.readline())
        daemon = psutil.Process(daemon_pid)
        assert daemon.is_running()
        # SIGKILL: no clean-up runs in the planner; the daemon must notice on its own.
        planner.send_signal(signal.SIGKILL)
        planner.wait(10)
        gone, _ = psutil.wait_procs([daemon], timeout=30)
        assert daemon in gone, "the daemon outlived its planner"
        log = (tmp_path / ".annealplan" / "executor" / "daemon.log").read_text()
        assert "is gone; shutting down" in log
    finally:
        if planner.poll() is None:
            planner.kill()
        for p in psutil.process_iter(["cmdline"]):
            if str(tmp_path) in " ".join(p.info["cmdline"] or []):
                p.kill()


async def test_the_local_backend_starts_its_daemon_and_closing_stops_it(tmp_path: Path):
    from plugins.manager import load_registry

    local = load_registry(entry_points=False).executor_backend("local")
    settings = local.parse_settings({"max_jobs": 2, "root": "data"})
    (tmp_path / "data").mkdir()
    client = local.connect(settings, name="here", project_dir=tmp_path)
    daemon = psutil.Process(client.launcher.proc.pid)
    try:
        assert client.name == "here" and client.url.startswith("http://127.0.0.1:")
        health = await client.health()
        assert health.ok
        cmdline = daemon.cmdline()
        assert cmdline[cmdline.index("--max-jobs") + 1] == "2"
        assert cmdline[cmdline.index("--root") + 1] == str((tmp_path / "data").resolve())
    finally:
        await client.aclose()
    gone, _ = psutil.wait_procs([daemon], timeout=30)
    assert daemon in gone, "closing the local backend's client left its daemon running"
