"""The README's usage examples work as written.

Every ``annealplan …`` and ``annealplan-executor …`` line of the fenced ``bash`` blocks in
the README's Usage section is checked, in the README's order, in a project folder built in
``tmp_path``: a runs table like a real one (two sources and a control, two metrics), a few
JSONL documents for the sources to point at, and the token file the README makes.

- By default a line is **run** through the real CLI, so a wrong option, a missing required
  one, or an example that fails on a store with several metrics fails this test.
- A line that needs an executor doing minutes of training (``PARSE_ONLY``) is parsed by
  click's own parser (an unknown or a missing required option fails), and ``sweep run``
  lines are turned into the jobs they would submit (a missing base model fails).
- ``annealplan-executor serve`` starts the real daemon (on a free port) for the lines after
  it. The README's machine-specific places are mapped into ``tmp_path`` (``PLACES``).

A new README line is checked without editing this file; a verb that must not run here gets
an entry in ``PARSE_ONLY``.
"""

from __future__ import annotations

import inspect
import re
import secrets
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import click
import numpy as np
import pytest
from click.testing import CliRunner

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PROGRAMS = ("annealplan", "annealplan-executor")
#: argv prefixes (after the program) that are parsed, not run: they need executors that
#: train for minutes, a cluster (the Slurm and Ray executors), or a terminal
PARSE_ONLY = (
    ("sweep", "run"),
    ("confirm",),
    ("jobs",),
    ("tui",),
    ("executors", "add", "hpc"),
    ("executors", "add", "ray1"),
)
#: the README's places on a GPU box and a laptop, and what they are here (see ``places``)
PLACES = ("/data/annealplan", "~/", "8765")
#: shell syntax that a checked line must not contain (one command per line)
SHELL = {"&&", "||", "|", ";", "&", ">", ">>", "<"}
METRICS = ("medqa_4options/acc", "val_loss")


def usage_commands(text: str) -> list[list[str]]:
    """The argv of every ``annealplan``/``annealplan-executor`` line of the Usage section's
    ``bash`` blocks (continuation lines joined, comments dropped)."""
    start = text.index("\n## Usage")
    end = text.index("\n## ", start + 1)
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text[start:end], re.S):
        for line in block.replace("\\\n", " ").splitlines():
            argv = shlex.split(line, comments=True)
            if argv and argv[0] in PROGRAMS:
                commands.append(argv)
    return commands


COMMANDS = usage_commands(README.read_text())


def show(argv: list[str]) -> str:
    return shlex.join(argv)


def parse(argv: list[str]) -> click.Context:
    """Parse ``annealplan …`` with click's own parser down to its verb; nothing runs.

    Raises:
        click.UsageError: an unknown verb or option, a missing required option or argument.
    """
    from planner.cli import cli

    cmd: click.Command = cli
    name, args, ctx = "annealplan", argv[1:], None
    while isinstance(cmd, click.Group):
        assert args and not args[0].startswith("-"), (
            f"{show(argv)}: options before the verb are not checked here"
        )
        ctx = click.Context(cmd, info_name=name, parent=ctx)
        sub = cmd.get_command(ctx, args[0])
        if sub is None:
            raise click.UsageError(f"no command {args[0]!r}", ctx)
        cmd, name, args = sub, args[0], args[1:]
    return cmd.make_context(name, list(args), parent=ctx, resilient_parsing=False)


def check_sweep_run(ctx: click.Context, project: Path) -> None:
    """The jobs ``sweep run`` would submit, built as it builds them (before any executor is
    asked): the stored experiment merged with the line's flags must make valid jobs."""
    from planner.commands.jobs import sweep_overrides
    from planner.dispatch.ingest import build_job
    from planner.store import open_store

    store = open_store(project / "annealplan.duckdb")
    try:
        flags = inspect.signature(sweep_overrides).parameters
        overrides = sweep_overrides(
            store,
            ctx.params["experiment"],
            **{k: ctx.params[k] for k in flags if k not in ("store", "experiment")},
        )
        meta, specs = store.experiment(ctx.params["experiment"])
        jobs = [build_job(s, {**meta, **overrides}, store.source) for s in specs]
    finally:
        store.close()
    assert jobs


def check_executor_settings(ctx: click.Context) -> None:
    """The settings an ``executors add`` line gives, validated by its backend's own model
    (its checks against a live cluster are what the backends' tests run).

    Raises:
        ConfigError: an unknown or invalid setting.
    """
    from planner.commands.executors import backend_options
    from plugins.manager import load_registry

    backend = load_registry(entry_points=False).executor_backend(ctx.params["backend"])
    backend.parse_settings(backend_options(ctx.args))


def write_runs_table(path: Path) -> None:
    """Runs as a team would have them: 135M-parameter anneals on two sources and a control,
    7 token budgets × 2 seeds, each scored on an accuracy and a loss (compute in FLOPs)."""
    rng = np.random.default_rng(0)
    n = 135e6
    lines = ["source,compute,metric,value,params,tokens,seed,compute_unit"]
    for source, gain, alpha in (("web", 0.10, 0.25), ("textbook", 0.14, 0.35), ("control", 0, 0)):
        for tokens in np.geomspace(1e9, 1e12, 7):
            for seed in range(2):
                g = gain * (1 - (tokens / 1e9) ** -alpha) if gain else 0.0
                for metric, value in zip(METRICS, (0.30 + g, 3.0 - 2 * g), strict=True):
                    value += rng.normal(0, 0.003)
                    lines.append(
                        f"{source},{6 * n * tokens:.6g},{metric},{value:.5f},{n:.6g},"
                        f"{tokens:.6g},{seed},flops"
                    )
    path.write_text("\n".join(lines) + "\n")


def write_documents(path: Path, topic: str, count: int = 40) -> None:
    rng = np.random.default_rng(len(topic))
    words = ["dose", "trial", "patient", "cell", "gene", "ruling", "energy", "value", topic]
    docs = [" ".join(rng.choice(words, size=30)) + f" ({topic} {i})" for i in range(count)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f'{{"text": "{d}"}}\n' for d in docs))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def places(tmp_path: Path) -> dict[str, str]:
    """The README's GPU-box root, home folder (with the token file its ``install`` and
    ``openssl`` lines make) and default port, here."""
    home = tmp_path / "home"
    home.mkdir()
    token = home / ".annealplan-token"
    token.touch(mode=0o600)
    token.write_text(secrets.token_hex(32) + "\n")
    (tmp_path / "gpu-root").mkdir()
    mapping = {"/data/annealplan": str(tmp_path / "gpu-root"), "~/": f"{home}/"}
    mapping["8765"] = str(free_port())
    assert set(mapping) == set(PLACES)
    return mapping


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The folder the README's commands run in: its runs table and source documents."""
    project = tmp_path / "project"
    project.mkdir()
    write_runs_table(project / "my_runs.csv")
    write_documents(project / "data" / "web" / "crawl.jsonl", "web")
    write_documents(project / "data" / "general" / "crawl.jsonl", "general")
    write_documents(project / "data" / "books.jsonl", "book")
    monkeypatch.chdir(project)
    monkeypatch.delenv("ANNEALPLAN_DB", raising=False)
    return project


@contextmanager
def executor_daemon(argv: list[str], port: str, log: Path) -> Iterator[None]:
    """``annealplan-executor serve …`` as the README starts it, on ``port``, until the end."""
    exe = Path(sys.executable).with_name(argv[0])
    with log.open("w") as out:
        proc = subprocess.Popen(
            [str(exe), *argv[1:], "--port", port], stdout=out, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                pytest.fail(f"{show(argv)} exited {proc.returncode}: {log.read_text()}")
            try:
                socket.create_connection(("127.0.0.1", int(port)), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, f"{show(argv)} did not listen in 120 s"
                time.sleep(0.2)
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_the_usage_section_has_its_commands():
    assert len(COMMANDS) >= 20, [show(a) for a in COMMANDS]
    assert {"runs", "fit", "allocate", "sweep", "executors", "serve"} <= {a[1] for a in COMMANDS}
    for prefix in PARSE_ONLY:
        assert any(tuple(a[1 : 1 + len(prefix)]) == prefix for a in COMMANDS), (
            f"PARSE_ONLY names {' '.join(prefix)!r}, which the README no longer shows"
        )
    for argv in COMMANDS:
        assert not SHELL & set(argv), f"one command per line: {show(argv)}"


def test_parse_refuses_what_the_cli_refuses():
    def refusal(*argv: str) -> str:
        with pytest.raises(click.UsageError) as e:
            parse(["annealplan", *argv])
        return e.value.format_message()

    assert "--budget" in refusal("frontier", "--budget", "2000gpuh", "--from", "1", "--to", "2")
    assert "--from" in refusal("crossovers", "--model-params", "135M")
    assert "nope" in refusal("jobs", "nope")
    assert parse(["annealplan", "jobs", "logs", "JOB"]).params["job_id"] == "JOB"


@pytest.mark.slow
def test_every_usage_line_runs_as_written(project: Path, places: dict[str, str]):
    from planner.cli import cli
    from planner.errors import AnnealplanError

    def here(argv: list[str]) -> list[str]:
        out = []
        for arg in argv:
            for readme, local in places.items():
                arg = arg.replace(readme, local)
            out.append(arg)
        return out

    with ExitStack() as daemons:
        for readme_argv in COMMANDS:
            argv = here(readme_argv)
            line = show(readme_argv)
            if argv[0] == "annealplan-executor":
                log = project.parent / "executor.log"
                daemons.enter_context(executor_daemon(argv, places["8765"], log))
            elif any(tuple(argv[1 : 1 + len(p)]) == p for p in PARSE_ONLY):
                try:
                    ctx = parse(argv)
                except click.UsageError as e:
                    pytest.fail(f"README: {line}: {e.format_message()}")
                try:
                    if argv[1:3] == ["sweep", "run"]:
                        check_sweep_run(ctx, project)
                    elif argv[1:3] == ["executors", "add"]:
                        check_executor_settings(ctx)
                except AnnealplanError as e:
                    pytest.fail(f"README: {line}: {e.msg}")
            else:
                result = CliRunner().invoke(cli, argv[1:], catch_exceptions=False)
                assert result.exit_code == 0, f"README: {line}\n{result.output}"
    assert (project / "report" / "report.html").exists()
