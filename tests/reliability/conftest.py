"""Fixtures for the reliability tests: an executor root, a private token file, the daemon's
app in-process (same app, same guard middleware) and the daemon as users start it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from executors.daemon import DaemonConfig, create_app

TOKEN = "reliability-token-" + "x" * 24
HOSTS = frozenset({"127.0.0.1", "localhost", "testserver"})


def env_int(name: str, default: int) -> int:
    """A loop count from the environment (CI default otherwise)."""
    return int(os.environ.get(name, default))


def spec(job_id: str = "job-1", tokens: int = 1000, **extra) -> dict:
    """A valid job spec for the root built by the ``root`` fixture."""
    return {
        "job_id": job_id,
        "base_model": "model",
        "source": {"kind": "files", "config": {"paths": ["data/a.jsonl"]}, "tokens": tokens},
        "replay": {"source": {"kind": "files", "config": {"paths": ["data/b.jsonl"]}}},
        **extra,
    }


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "root"
    (r / "model").mkdir(parents=True)
    (r / "data").mkdir()
    (r / "data" / "a.jsonl").write_text('{"text": "a"}\n')
    (r / "data" / "b.jsonl").write_text('{"text": "b"}\n')
    (r / "tasks").mkdir()
    return r


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    f = tmp_path / "token"
    f.write_text(TOKEN)
    os.chmod(f, 0o600)
    return f


@pytest.fixture
def app(root: Path):
    cfg = DaemonConfig(
        root=root,
        state_dir=root.parent / "state",
        token=TOKEN,
        max_queue=1000,
        max_body_bytes=64 * 1024,
        allowed_hosts=HOSTS,
    )
    return create_app(cfg, start_supervisor=False)


@pytest.fixture
async def client(app):
    asgi, _ = app
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=asgi),
        base_url="http://127.0.0.1",
        headers={"Authorization": f"Bearer {TOKEN}"},
    ) as c:
        yield c


@dataclass
class Daemon:
    """``annealplan-executor serve`` in a subprocess, on a free loopback port."""

    root: Path
    state: Path
    token_file: Path
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    port: int = 0
    stderr_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Daemon:
        port_file = self.state.parent / "port.json"
        port_file.unlink(missing_ok=True)
        exe = Path(sys.executable).with_name("annealplan-executor")
        cmd = [
            str(exe),
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--port-file",
            str(port_file),
            "--token-file",
            str(self.token_file),
            "--root",
            str(self.root),
            "--state",
            str(self.state),
            *self.args,
        ]
        self.stderr_path = self.state.parent / "daemon.stderr"
        with self.stderr_path.open("ab") as err:
            self.proc = subprocess.Popen(
                cmd,
                stdout=err,
                stderr=err,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **self.env},
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited: {self.stderr_path.read_text()}")
            if port_file.is_file():
                self.port = json.loads(port_file.read_text())["port"]
                try:
                    r = httpx.get(f"{self.url}/v1/health", headers=self.headers, timeout=2)
                    if r.status_code == 200:
                        return self
                except httpx.TransportError:
                    pass
            time.sleep(0.05)
        raise RuntimeError("daemon did not come up in 60 s")

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {TOKEN}"}

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


@pytest.fixture
def daemon(root: Path, token_file: Path):
    """A factory of real daemons sharing one root and state folder; all stopped at the end."""
    made: list[Daemon] = []

    def make(*args: str, **env: str) -> Daemon:
        d = Daemon(root, root.parent / "state", token_file, list(args), dict(env))
        made.append(d)
        return d.start()

    yield make
    for d in made:
        d.stop()
