"""The executors a project knows (``executors.toml``): entries name a backend and hold its
settings, validated by the backend; dispatch reaches each executor through the plugin
registry's backends, a third party's exactly like the built-ins."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from executors.daemon import DaemonConfig, create_app
from executors.protocol import AnnealJobSpec
from planner.cli import cli
from planner.dispatch.registry import (
    EXECUTORS_FILE,
    add_executor,
    load_executors,
    open_clients,
    remove_executor,
)
from planner.errors import ConfigError, PluginError
from plugins.backends.http.client import ExecutorClient
from plugins.contract import BackendSettings, ExecutorBackend, JobSubmitter
from plugins.hookspecs import hookimpl
from plugins.manager import collect, load_registry, make_plugin_manager

TOKEN = "t" * 40


def test_executors_registry_and_cli(tmp_path: Path):
    token = tmp_path / "tok"
    token.write_text("x" * 32)
    os.chmod(token, 0o600)
    registry = load_registry(entry_points=False)
    with pytest.raises(ConfigError, match=r"'ftp://x' is not an http\(s\) URL"):
        add_executor(tmp_path, registry, "gpu1", {"url": "ftp://x", "token_file": str(token)})
    with pytest.raises(ConfigError, match=r"token file .* not found"):
        add_executor(tmp_path, registry, "gpu1", {"url": "http://h:1", "token_file": "nope"})
    add_executor(
        tmp_path, registry, "gpu1", {"url": "http://10.0.0.5:8765/", "token_file": str(token)}
    )
    [entry] = load_executors(tmp_path, registry)
    assert (entry.backend, entry.settings.url) == ("http", "http://10.0.0.5:8765")
    runner = CliRunner()
    res = runner.invoke(cli, ["--project", str(tmp_path), "executors", "list", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout) == [
        {"name": "gpu1", "backend": "http", "url": "http://10.0.0.5:8765", "token_file": str(token)}
    ]
    res = runner.invoke(
        cli,
        [
            "--project",
            str(tmp_path),
            "executors",
            "add",
            "gpu1",
            "--url",
            "http://h:1",
            "--token-file",
            str(token),
        ],
    )
    assert res.exit_code == 2 and "--replace" in res.output
    # Nothing listens there: health reports it down (exit 1), no traceback.
    res = runner.invoke(
        cli,
        [
            "--project",
            str(tmp_path),
            "executors",
            "add",
            "dead",
            "--url",
            "http://127.0.0.1:9",
            "--token-file",
            str(token),
        ],
    )
    res = runner.invoke(cli, ["--project", str(tmp_path), "executors", "health", "dead", "--json"])
    assert res.exit_code == 1 and json.loads(res.stdout)[0]["ok"] is False


def test_a_file_written_before_backends_loads_as_http(tmp_path: Path):
    (tmp_path / EXECUTORS_FILE).write_text(
        '[executors.gpu1]\nurl = "http://127.0.0.1:8765"\ntoken_file = "~/.tok"\n'
    )
    registry = load_registry(entry_points=False)
    [entry] = load_executors(tmp_path, registry)
    assert (entry.name, entry.backend) == ("gpu1", "http")
    assert entry.settings_dict() == {"url": "http://127.0.0.1:8765", "token_file": "~/.tok"}
    # Rewriting it (adding another) keeps the entry and names its backend from then on.
    token = tmp_path / "tok"
    token.write_text("x" * 32)
    add_executor(tmp_path, registry, "here", {"max_jobs": 2}, backend="local")
    assert [(e.name, e.backend) for e in load_executors(tmp_path, registry)] == [
        ("gpu1", "http"),
        ("here", "local"),
    ]
    assert 'backend = "http"' in (tmp_path / EXECUTORS_FILE).read_text()
    remove_executor(tmp_path, registry, "here")
    assert [e.name for e in load_executors(tmp_path, registry)] == ["gpu1"]


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (
            'url = "http://h:1"\ntoken_file = "t"\ntokn_file = "t"\n',
            r"executor 'gpu1': invalid settings of executor backend 'http': tokn_file: Extra",
        ),
        ('url = "http://h:1"\n', r"executor 'gpu1': .*token_file: Field required"),
        ('backend = "htp"\nurl = "x"\n', r"unknown executor backend 'htp'; did you mean 'http'"),
        (
            'backend = "local"\nmax_jobs = 0\n',
            r"settings of executor backend 'local': max_jobs: Input should be greater",
        ),
    ],
)
def test_bad_entries_name_the_entry_and_the_setting(tmp_path: Path, table: str, message: str):
    (tmp_path / EXECUTORS_FILE).write_text(f"[executors.gpu1]\n{table}")
    with pytest.raises(ConfigError, match=message):
        load_executors(tmp_path, load_registry(entry_points=False))


def test_add_refuses_an_unknown_backend_and_unknown_settings(tmp_path: Path):
    registry = load_registry(entry_points=False)
    with pytest.raises(PluginError, match="unknown executor backend 'slurm'"):
        add_executor(tmp_path, registry, "c", {}, backend="slurm")
    with pytest.raises(ConfigError, match="url: Extra inputs"):
        add_executor(tmp_path, registry, "c", {"url": "http://h:1"}, backend="local")
    res = CliRunner().invoke(
        cli, ["--project", str(tmp_path), "executors", "add", "c", "--set", "max_jobs=2"]
    )
    assert res.exit_code == 2 and "url: Field required" in res.output
    res = CliRunner().invoke(
        cli,
        ["--project", str(tmp_path), "executors", "add", "here", "--backend", "local",
         "--set", "max_jobs=2", "--json"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout) == {"name": "here", "backend": "local", "max_jobs": 2}
    listed = CliRunner().invoke(cli, ["--project", str(tmp_path), "executors", "list"])
    assert "local: 127.0.0.1 (started by the planner) max_jobs=2" in listed.output


class InProcessSettings(BackendSettings):
    """A third party's settings: where its daemon keeps its journal."""

    state: str


class InProcessBackend(ExecutorBackend):
    """A third party's backend: a real executor daemon app served in this process."""

    name = "in-process"
    Settings = InProcessSettings

    def __init__(self) -> None:
        self.opened: list[ExecutorClient] = []

    def connect(self, settings, *, name, project_dir, retries=None) -> ExecutorClient:
        cfg = DaemonConfig(root=project_dir, state_dir=project_dir / settings.state, token=TOKEN)
        asgi, _ = create_app(cfg, start_supervisor=False)
        client = ExecutorClient(
            "http://in-process", TOKEN, name=name, transport=httpx.ASGITransport(app=asgi)
        )
        self.opened.append(client)
        return client


async def test_dispatch_reaches_a_third_party_backend_through_the_hook(tmp_path: Path):
    backend = InProcessBackend()

    class ThirdParty:
        @hookimpl
        def register_executor_backends(self, register: Callable[[ExecutorBackend], None]):
            register(backend)

    pm, problems = make_plugin_manager(entry_points=False)
    pm.register(ThirdParty(), name="third-party")
    registry = collect(pm, problems=problems)
    assert registry.owner("executor_backend", "in-process").name == "third-party"
    (tmp_path / "model").mkdir()
    add_executor(tmp_path, registry, "mine", {"state": "state"}, backend="in-process")

    spec = AnnealJobSpec.model_validate(
        {
            "job_id": "third-party-job",
            "base_model": "model",
            "source": {"kind": "files", "config": {"paths": ["d.jsonl"]}, "tokens": 64},
        }
    )
    async with open_clients(tmp_path, registry) as clients:
        [client] = clients
        assert isinstance(client, JobSubmitter) and client.name == "mine"
        await client.submit(spec)
        assert [r.job_id for r in await client.jobs()] == ["third-party-job"]
    assert [c.name for c in backend.opened] == ["mine"]
    assert backend.opened[0]._http.is_closed  # closed on leaving open_clients
    with pytest.raises(ConfigError, match="no executor 'other'"):
        async with open_clients(tmp_path, registry, only="other"):
            pass
