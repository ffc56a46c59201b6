"""The ``annealplan-executor`` command line.

    annealplan-executor serve --host 127.0.0.1 --port 8765 --token-file F --root DIR \\
        [--state DIR] [--gpus N] [--hostfile F] [--max-jobs N] [--worker-stall-timeout S]
        [--allow-remote]

Security: the token is read from a file only its owner may read (the daemon refuses to start
otherwise); the daemon binds to loopback unless ``--allow-remote`` is given, and its guard
refuses requests whose ``Host`` is not one it serves or that carry a browser ``Origin``.
Every refusal to start is one ``error: …`` line on stderr and exit code 2.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import sys
from pathlib import Path
from typing import IO, Any

import click

from executors.daemon.app import create_app
from executors.daemon.config import DaemonConfig, TokenFileError, read_token_file
from executors.daemon.supervisor import StateDirLocked, lock_state_dir

_LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1", "[::1]"}
_PATH = click.Path(path_type=Path)


class StartRefused(click.ClickException):
    """The daemon cannot start as asked: one ``error:`` line on stderr, exit code 2."""

    exit_code = 2

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"error: {self.message}", err=True)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """The annealplan executor: runs anneal jobs for the planner on this machine."""


@cli.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8765, show_default=True, help="0: any free port")
@click.option("--port-file", type=_PATH, help='write {"port": N} here once listening')
@click.option("--token-file", type=_PATH, required=True)
@click.option("--root", type=_PATH, required=True, help="allow-listed root of job paths")
@click.option("--state", type=_PATH, help="journal, logs, checkpoints (ROOT/.annealplan/executor)")
@click.option("--gpus", type=int, default=1, show_default=True, help="processes per job (GPUs)")
@click.option("--hostfile", type=_PATH, help="DeepSpeed hostfile for multi-node jobs")
@click.option("--launcher", type=click.Choice(["deepspeed", "torchrun"]), default="deepspeed")
@click.option("--max-jobs", type=int, default=1, show_default=True, help="jobs run at once")
@click.option(
    "--exit-with-parent",
    type=int,
    metavar="PID",
    help="shut down when process PID (the program that started this daemon) exits",
)
@click.option(
    "--threads-per-job",
    type=int,
    help="CPU threads per job (default: the cores divided by --max-jobs)",
)
@click.option("--max-queue", type=int, default=256, show_default=True)
@click.option("--max-body-bytes", type=int, default=1 << 20, show_default=True)
@click.option("--peak-flops", type=float, help="per-GPU peak FLOP/s, for MFU")
@click.option(
    "--heartbeat-timeout",
    type=float,
    default=120.0,
    show_default=True,
    help="seconds of trainer silence = stalled",
)
@click.option(
    "--worker-stall-timeout",
    type=float,
    help="seconds without a worker heartbeat = stalled (default: --heartbeat-timeout + 30)",
)
@click.option("--plugin", "plugins", multiple=True, help="extra plugin module (repeatable)")
@click.option("--allow-remote", is_flag=True, help="allow a non-loopback bind")
def serve(host: str, port: int, port_file: Path | None, **options: Any) -> None:
    """Serve the executor's HTTP API."""
    cfg = _config(host, **options)
    # Held until this process exits: never two daemons on one journal.
    try:
        _state_lock = lock_state_dir(cfg.state_dir)
    except StateDirLocked as e:
        raise StartRefused(str(e)) from None
    asgi, _ = create_app(cfg)
    sock = _bind(host, port)
    bound = sock.getsockname()[1]
    if port_file is not None:
        tmp = port_file.with_name(port_file.name + ".tmp")
        tmp.write_text(json.dumps({"port": bound, "pid": os.getpid()}))
        os.replace(tmp, port_file)
    print(f"annealplan executor listening on {host}:{bound}", file=sys.stderr, flush=True)
    import uvicorn

    config = uvicorn.Config(
        asgi,
        log_level="warning",
        access_log=False,  # keep logs free of anything request-shaped
        timeout_graceful_shutdown=10,
        lifespan="on",
    )
    uvicorn.Server(config).run(sockets=[sock])


def _config(
    host: str,
    *,
    token_file: Path,
    root: Path,
    state: Path | None,
    gpus: int,
    hostfile: Path | None,
    launcher: str,
    max_jobs: int,
    exit_with_parent: int | None,
    threads_per_job: int | None,
    max_queue: int,
    max_body_bytes: int,
    peak_flops: float | None,
    heartbeat_timeout: float,
    worker_stall_timeout: float | None,
    plugins: tuple[str, ...],
    allow_remote: bool,
) -> DaemonConfig:
    """The daemon's configuration from ``serve``'s options, or the reason it cannot start.

    Raises:
        StartRefused: a non-loopback host without ``--allow-remote``, a stall limit under
            5 s, a token file others may read, or a root that is not a folder.
    """
    if not _is_loopback(host) and not allow_remote:
        raise StartRefused(
            f"refusing to bind {host}: not loopback. Use an SSH tunnel, or pass "
            "--allow-remote behind TLS and a firewall"
        )
    if worker_stall_timeout is not None and worker_stall_timeout < 5:
        raise StartRefused("--worker-stall-timeout must be at least 5 s (workers beat every 2 s)")
    try:
        token = read_token_file(token_file)
    except TokenFileError as e:
        raise StartRefused(str(e)) from None
    root = root.resolve()
    if not root.is_dir():
        raise StartRefused(f"the root {root} is not a folder")
    return DaemonConfig(
        root=root,
        state_dir=(state or root / ".annealplan" / "executor").resolve(),
        token=token,
        max_jobs=max(1, max_jobs),
        max_queue=max_queue,
        max_body_bytes=max_body_bytes,
        gpus=gpus,
        hostfile=hostfile.resolve() if hostfile else None,
        launcher=launcher,
        peak_flops=peak_flops,
        threads_per_job=threads_per_job,
        parent_pid=exit_with_parent,
        heartbeat_timeout_s=heartbeat_timeout,
        worker_stall_s=worker_stall_timeout,
        plugins=plugins,
        allowed_hosts=frozenset() if allow_remote else frozenset({*_LOOPBACK_NAMES, host}),
    )


def _bind(host: str, port: int) -> socket.socket:
    """A listening socket; bound before serving, so ``--port 0`` can report its port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as e:
        sock.close()
        raise StartRefused(f"cannot listen on {host}:{port}: {e.strerror}") from None
    sock.listen(128)
    return sock


def main(argv: list[str] | None = None) -> None:
    """Console script ``annealplan-executor``."""
    cli.main(args=argv, prog_name="annealplan-executor")
