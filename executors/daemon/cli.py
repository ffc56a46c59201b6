"""The ``annealplan-executor`` command line.

    annealplan-executor serve --host 127.0.0.1 --port 8765 --token-file F --root DIR \\
        [--state DIR] [--gpus N] [--hostfile F] [--max-jobs N] [--worker-stall-timeout S]
        [--max-connections N] [--tls-cert F --tls-key F] [--allow-remote [--insecure]]

Security: the token is read from a file only its owner may read (the daemon refuses to start
otherwise); the daemon binds to loopback unless ``--allow-remote`` is given, and its guard
refuses requests whose ``Host`` is not one it serves or that carry a browser ``Origin``.
``--allow-remote`` turns the Host check off and prints a warning naming what it exposes; it
needs TLS (``--tls-cert``/``--tls-key``) or an explicit ``--insecure``.
Every refusal to start is one ``error: …`` line on stderr and exit code 2.
"""

from __future__ import annotations

import ipaddress
import json
import os
import ssl
import sys
from pathlib import Path
from typing import IO, Any

import click

from executors.daemon.app import create_app
from executors.daemon.config import (
    BODY_TIMEOUT_S,
    DaemonConfig,
    TokenFileError,
    read_token_file,
)
from executors.daemon.server import (
    HEADER_TIMEOUT_S,
    MAX_CONNECTIONS,
    BindFailed,
    ServeLimits,
    bind,
)
from executors.daemon.server import serve as serve_app
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
@click.option(
    "--max-connections",
    type=click.IntRange(min=2),
    default=MAX_CONNECTIONS,
    show_default=True,
    help="connections served at once (beyond it: 503)",
)
@click.option(
    "--header-timeout",
    type=click.FloatRange(min=0.1),
    default=HEADER_TIMEOUT_S,
    show_default=True,
    help="seconds a request's headers may take to arrive (then the connection is closed)",
)
@click.option(
    "--body-timeout",
    type=click.FloatRange(min=0.1),
    default=BODY_TIMEOUT_S,
    show_default=True,
    help="seconds a request's body may take to arrive (then 408)",
)
@click.option("--tls-cert", type=_PATH, help="serve HTTPS with this certificate (PEM)")
@click.option("--tls-key", type=_PATH, help="the certificate's private key (PEM)")
@click.option(
    "--allow-remote",
    is_flag=True,
    help="allow a non-loopback bind and any Host header (needs TLS or --insecure)",
)
@click.option(
    "--insecure",
    is_flag=True,
    help="with --allow-remote: serve plain HTTP (the token travels in clear text)",
)
def serve(
    host: str,
    port: int,
    port_file: Path | None,
    max_connections: int,
    header_timeout: float,
    tls_cert: Path | None,
    tls_key: Path | None,
    insecure: bool,
    **options: Any,
) -> None:
    """Serve the executor's HTTP API."""
    cfg = _config(host, **options)
    limits = _limits(
        cfg,
        max_connections=max_connections,
        header_timeout=header_timeout,
        tls_cert=tls_cert,
        tls_key=tls_key,
        insecure=insecure,
    )
    # Held until this process exits: never two daemons on one journal.
    try:
        _state_lock = lock_state_dir(cfg.state_dir)
    except StateDirLocked as e:
        raise StartRefused(str(e)) from None
    asgi, _ = create_app(cfg)
    try:
        sock = bind(host, port)
    except BindFailed as e:
        raise StartRefused(e.strerror or str(e)) from None
    bound = sock.getsockname()[1]
    if port_file is not None:
        tmp = port_file.with_name(port_file.name + ".tmp")
        tmp.write_text(json.dumps({"port": bound, "pid": os.getpid()}))
        os.replace(tmp, port_file)
    scheme = "https" if limits.tls_cert else "http"
    if not cfg.allowed_hosts:
        _warn_remote(cfg, f"{scheme}://{host}:{bound}", tls=limits.tls_cert is not None)
    print(
        f"annealplan executor listening on {scheme}://{host}:{bound}", file=sys.stderr, flush=True
    )
    serve_app(asgi, sock, limits)


def _limits(
    cfg: DaemonConfig,
    *,
    max_connections: int,
    header_timeout: float,
    tls_cert: Path | None,
    tls_key: Path | None,
    insecure: bool,
) -> ServeLimits:
    """The server's limits and TLS, or the reason it cannot start.

    Raises:
        StartRefused: half a TLS pair, a pair that does not load, ``--allow-remote``
            without TLS or ``--insecure``, or ``--insecure`` without ``--allow-remote``.
    """
    remote = not cfg.allowed_hosts
    if (tls_cert is None) != (tls_key is None):
        raise StartRefused("give both --tls-cert and --tls-key, or neither")
    if tls_cert is not None and tls_key is not None:
        try:
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(tls_cert, tls_key)
        except (OSError, ssl.SSLError) as e:
            raise StartRefused(
                f"cannot load the TLS certificate {tls_cert} with the key {tls_key}: {e}"
            ) from None
        if insecure:
            raise StartRefused("--insecure serves plain HTTP; leave it out with --tls-cert")
    elif remote and not insecure:
        raise StartRefused(
            "--allow-remote serves the job API beyond this machine, and without TLS the "
            "bearer token and every job travel in clear text: give --tls-cert and --tls-key "
            "(or keep loopback and an SSH tunnel), or pass --insecure to accept that"
        )
    if insecure and not remote:
        raise StartRefused("--insecure only goes with --allow-remote")
    return ServeLimits(
        max_connections=max_connections,
        header_timeout_s=header_timeout,
        tls_cert=tls_cert.resolve() if tls_cert else None,
        tls_key=tls_key.resolve() if tls_key else None,
    )


def _warn_remote(cfg: DaemonConfig, url: str, *, tls: bool) -> None:
    """What ``--allow-remote`` exposes, on stderr before serving."""
    lines = [
        f"warning: --allow-remote: {url} answers any host name, not only this machine's.",
        "  Whoever reaches it with the token can submit jobs that run DeepSpeed and lm-eval",
        f"  here, read any file under {cfg.root} through a job's source, read every job's",
        "  log and results, and cancel jobs.",
    ]
    if not tls:
        lines.append("  --insecure: no TLS, so the token and every job travel in clear text.")
    lines.append("  Put a firewall in front of it, or keep loopback and use an SSH tunnel.")
    print("\n".join(lines), file=sys.stderr, flush=True)


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
    body_timeout: float,
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
            "--allow-remote with --tls-cert and --tls-key, behind a firewall"
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
        body_timeout_s=body_timeout,
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


def main(argv: list[str] | None = None) -> None:
    """Console script ``annealplan-executor``."""
    cli.main(args=argv, prog_name="annealplan-executor")
