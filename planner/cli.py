"""``annealplan`` command line: the composition root.

It loads settings, opens the store, builds the plugin registry and the executor clients,
and hands them to the core or to the TUI. Each room's verbs live in ``planner/commands``;
this module only assembles them and turns errors into one clean line on stderr.
"""

from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from planner.errors import AnnealplanError

# Modules under planner.commands that each expose ``COMMANDS`` (a list of click commands).
COMMAND_MODULES = (
    "runs",
    "laws",
    "backtest",
    "sources",
    "plugins",
    "allocate",
    "design",
    "executors",
    "jobs",
    "confirm",
    "report",
    "demo",
    "tui",
)


@dataclass
class Context:
    """What every command receives: settings and lazily opened resources."""

    db: str | None = None
    project_dir: Path | None = None
    debug: bool = False
    _settings: Any = None
    _store: Any = None
    _registry: Any = None
    _cleanups: list[Any] = field(default_factory=list)

    @property
    def settings(self):
        if self._settings is None:
            from planner.config import load_settings

            self._settings = load_settings(project_dir=self.project_dir, db=self.db)
        return self._settings

    @property
    def store(self):
        if self._store is None:
            from planner.store import open_store

            self._store = open_store(self.settings.db_path)
            self._cleanups.append(self._store.close)
        return self._store

    @property
    def registry(self):
        """The plugin registry (built-ins + entry points), collected once."""
        if self._registry is None:
            from plugins.manager import collect, make_plugin_manager

            pm, problems = make_plugin_manager(only=self.settings.load_plugins)
            self._registry = collect(pm, self.settings.plugins, problems=problems)
            if self._registry.problems:
                # A broken plugin is left out, not fatal; say so once, on stderr (stdout
                # stays data), so a missing kind or cost model is not a mystery.
                names = sorted({p.plugin for p in self._registry.problems})
                click.echo(
                    f"warning: plugin {', '.join(names)} failed to load or register and was "
                    "left out; `annealplan plugins` shows why",
                    err=True,
                )
        return self._registry

    def close(self) -> None:
        while self._cleanups:
            self._cleanups.pop()()


class _Group(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except AnnealplanError as e:
            obj = ctx.find_object(Context)
            if obj is not None and obj.debug:
                raise
            click.echo(f"error: {e.msg}", err=True)
            sys.exit(2)


@click.group(cls=_Group, invoke_without_command=True)
@click.option("--db", envvar="ANNEALPLAN_DB", help="DuckDB file (default ./annealplan.duckdb).")
@click.option(
    "--project",
    "project_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Project folder (default: the current folder).",
)
@click.option("--debug", is_flag=True, help="Show tracebacks.")
@click.version_option(package_name="annealplan")
@click.pass_context
def cli(ctx: click.Context, db: str | None, project_dir: Path | None, debug: bool) -> None:
    """annealplan: which data sources to pay for, and how many tokens of each."""
    obj = Context(db=db, project_dir=project_dir, debug=debug)
    ctx.obj = obj
    ctx.call_on_close(obj.close)
    if ctx.invoked_subcommand is None:
        if sys.stdout.isatty() and "tui" in cli.commands:
            ctx.invoke(cli.commands["tui"])
        else:
            click.echo(ctx.get_help())


def _assemble() -> None:
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"planner.commands.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"planner.commands.{name}":
                continue  # that room has no verbs yet
            raise
        for command in module.COMMANDS:
            cli.add_command(command)


_assemble()


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    cli.main(args=argv, prog_name="annealplan")
