"""Real clusters for the backend tests, started the way an administrator starts them and
stopped by their own process ids (never ``pkill`` nor ``ray stop``, which would reach
other users' daemons):

- :func:`slurm_cluster`: a one-node Slurm (munged, slurmctld, slurmd from Debian's
  ``slurm-wlm`` and ``munge`` packages) with its own key, socket, ports, spool and state
  under a temporary folder; it needs root, since slurmd runs jobs as their user;
- :func:`ray_head`: a local Ray head (``ray start --head --block``) on free ports with its
  own ``--temp-dir``.

Each yields what a test needs (the cluster's config, the dashboard's address) and skips
with a plain reason only when the cluster cannot run here at all (no packages, not root).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest

#: the node's CPUs in the test cluster (two, so that two 2-CPU jobs run one after the other)
SLURM_CPUS = 2
SLURM_PARTITION = "debug"
SLURM_COMMANDS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scancel", "sinfo")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(procs: list[subprocess.Popen], timeout_s: float = 30.0) -> None:
    """SIGTERM each process we started (newest first), then SIGKILL what is left."""
    for proc in reversed(procs):
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


def _wait(predicate, timeout_s: float, what: str, procs: list[subprocess.Popen], logs: list[Path]):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for proc in procs:
            if proc.poll() is not None:
                raise RuntimeError(f"{what}: {proc.args[0]} exited: {_tails(logs)}")
        if predicate():
            return
        time.sleep(0.3)
    raise RuntimeError(f"timed out waiting for {what}: {_tails(logs)}")


def _tails(logs: list[Path]) -> str:
    parts = []
    for log in logs:
        with contextlib.suppress(OSError):
            parts.append(f"\n--- {log.name} ---\n" + log.read_text(errors="replace")[-1500:])
    return "".join(parts)


@dataclass
class SlurmCluster:
    """A running one-node cluster: point ``SLURM_CONF`` at :attr:`conf` to use it."""

    folder: Path
    conf: Path
    partition: str = SLURM_PARTITION
    procs: list[subprocess.Popen] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def run(self, *args: str) -> str:
        return subprocess.run(
            list(args), capture_output=True, text=True, env=self.env, timeout=60, check=True
        ).stdout

    def job_names(self) -> list[str]:
        """Names of every job the controller still knows (any state)."""
        out = self.run("squeue", "--noheader", "--states=all", "--format=%j")
        return [line.strip() for line in out.splitlines() if line.strip()]


def daemon_path(command: str) -> str | None:
    """A command's path: on PATH, or in the sbin folders where Debian puts daemons."""
    return shutil.which(command) or shutil.which(command, path="/usr/sbin:/usr/local/sbin:/sbin")


def _slurm_missing() -> str | None:
    if os.geteuid() != 0:
        return "a one-node Slurm cluster needs root here (slurmd runs jobs as their user)"
    missing = [c for c in SLURM_COMMANDS if daemon_path(c) is None]
    if missing:
        return f"Slurm is not installed ({', '.join(missing)} missing: apt-get install slurm-wlm munge)"
    return None


@contextlib.contextmanager
def slurm_cluster() -> Iterator[SlurmCluster]:
    """Start munged, slurmctld and slurmd in a temporary folder; stop them at the end."""
    if (why := _slurm_missing()) is not None:
        pytest.skip(why)
    folder = Path(tempfile.mkdtemp(prefix="slurm-"))
    folder.chmod(0o711)  # munged wants its socket's folder reachable, not writable, by others
    key = folder / "munge.key"
    fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(os.urandom(1024))
    sock = folder / "munge.socket"
    for sub in ("spool", "state"):
        (folder / sub).mkdir()
    host = socket.gethostname()
    conf = folder / "slurm.conf"
    conf.write_text(
        "\n".join(
            [
                "ClusterName=annealtest",
                f"SlurmctldHost={host}(127.0.0.1)",
                f"SlurmctldPort={free_port()}",
                f"SlurmdPort={free_port()}",
                "AuthType=auth/munge",
                "CredType=cred/munge",
                f"AuthInfo=socket={sock}",
                "ProctrackType=proctrack/linuxproc",
                "TaskPlugin=task/none",
                "JobAcctGatherType=jobacct_gather/none",
                "MpiDefault=none",
                "SelectType=select/cons_tres",
                "SelectTypeParameters=CR_Core",
                "ReturnToService=2",
                "SlurmdParameters=config_overrides",
                "SlurmUser=root",
                "SlurmdUser=root",
                "KillWait=10",
                f"StateSaveLocation={folder / 'state'}",
                f"SlurmdSpoolDir={folder / 'spool'}",
                f"SlurmctldPidFile={folder / 'slurmctld.pid'}",
                f"SlurmdPidFile={folder / 'slurmd.pid'}",
                f"SlurmctldLogFile={folder / 'slurmctld.log'}",
                f"SlurmdLogFile={folder / 'slurmd.log'}",
                f"NodeName={host} NodeAddr=127.0.0.1 CPUs={SLURM_CPUS} RealMemory=1000 "
                "State=UNKNOWN",
                f"PartitionName={SLURM_PARTITION} Nodes=ALL Default=YES MaxTime=INFINITE State=UP",
                "",
            ]
        )
    )
    cluster = SlurmCluster(folder, conf)
    env = cluster.env
    logs = [folder / "munged.log", folder / "slurmctld.log", folder / "slurmd.log"]
    out = (folder / "daemons.out").open("ab")

    def start(*cmd: str) -> subprocess.Popen:
        exe = daemon_path(cmd[0])
        assert exe is not None
        proc = subprocess.Popen(
            [exe, *cmd[1:]], env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        cluster.procs.append(proc)
        return proc

    try:
        start(
            "munged",
            "--foreground",
            "--force",
            f"--socket={sock}",
            f"--key-file={key}",
            f"--log-file={folder / 'munged.log'}",
            f"--pid-file={folder / 'munged.pid'}",
            f"--seed-file={folder / 'munged.seed'}",
        )
        _wait(sock.exists, 30, "munged's socket", cluster.procs, logs)
        start("slurmctld", "-D", "-i", "-f", str(conf))
        start("slurmd", "-D", "-f", str(conf))

        def idle() -> bool:
            try:
                states = cluster.run("sinfo", "--noheader", "--format=%T")
            except subprocess.SubprocessError:
                return False
            return "idle" in states

        _wait(idle, 90, "the node to be idle", cluster.procs, logs)
    except BaseException:
        _stop(cluster.procs)
        out.close()
        raise
    try:
        yield cluster
    finally:
        # Cancel what is left (this cluster's jobs only: SLURM_CONF is ours), let the
        # jobs' processes go, then stop the daemons we started.
        with contextlib.suppress(subprocess.SubprocessError):
            cluster.run("scancel", "--full", f"--partition={SLURM_PARTITION}")
            deadline = time.monotonic() + 30
            while (
                time.monotonic() < deadline
                and cluster.run("squeue", "--noheader", "--format=%i").strip()
            ):
                time.sleep(0.5)
        _stop(cluster.procs)
        out.close()
        shutil.rmtree(folder, ignore_errors=True)


@dataclass
class RayHead:
    """A running local Ray head; jobs go to :attr:`address`."""

    address: str
    temp_dir: Path
    proc: subprocess.Popen


def _ray_missing() -> str | None:
    try:
        import ray  # noqa: F401
    except ModuleNotFoundError:
        return "Ray is not installed here (pip install 'annealplan[ray]')"
    if not Path(sys.executable).with_name("ray").exists():
        return "the ray command is not installed beside this Python"
    return None


def _ray_processes(temp_dir: Path) -> list[psutil.Process]:
    """This head's processes: those whose command line names its own temp folder."""
    mine = []
    for p in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            if str(temp_dir) in " ".join(p.info["cmdline"] or []):
                mine.append(p)
    return mine


@contextlib.contextmanager
def ray_head(num_cpus: int = 2) -> Iterator[RayHead]:
    """``ray start --head --block`` on free ports with its own temp folder; stopped by its
    pid at the end (and any process of that temp folder still alive is killed)."""
    if (why := _ray_missing()) is not None:
        pytest.skip(why)
    # Ray's sockets live under --temp-dir: keep the path short (unix socket paths are
    # limited to about 100 characters).
    temp_dir = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))
    dashboard = free_port()
    env = {
        **os.environ,
        "RAY_USAGE_STATS_ENABLED": "0",
        # stop at once on SIGTERM (the head's default drains for 30 s first)
        "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0",
    }
    env.pop("RAY_ADDRESS", None)
    log = temp_dir / "head.out"
    cmd = [
        str(Path(sys.executable).with_name("ray")),
        "start",
        "--head",
        "--block",
        f"--num-cpus={num_cpus}",
        "--num-gpus=0",
        f"--port={free_port()}",
        "--dashboard-host=127.0.0.1",
        f"--dashboard-port={dashboard}",
        f"--ray-client-server-port={free_port()}",
        f"--dashboard-agent-listen-port={free_port()}",
        f"--temp-dir={temp_dir}",
        "--disable-usage-stats",
        "--include-dashboard=true",
    ]
    with log.open("ab") as out:
        proc = subprocess.Popen(
            cmd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    address = f"http://127.0.0.1:{dashboard}"

    def answers() -> bool:
        try:
            with urllib.request.urlopen(f"{address}/api/version", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    head = RayHead(address, temp_dir, proc)
    try:
        _wait(answers, 180, "the Ray head's dashboard", [proc], [log])
        yield head
    finally:
        _stop([proc], timeout_s=60)
        left = _ray_processes(temp_dir)
        for p in left:
            with contextlib.suppress(psutil.Error):
                p.kill()
        psutil.wait_procs(left, timeout=10)
        shutil.rmtree(temp_dir, ignore_errors=True)
