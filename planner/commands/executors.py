"""``annealplan executors add/list/remove/health``: the executor daemons of a project."""

from __future__ import annotations

import json

import click


@click.group("executors")
def executors() -> None:
    """Executor daemons that run anneals (none registered: a local one is started)."""


@executors.command("add")
@click.argument("name")
@click.option(
    "--backend",
    default="http",
    show_default=True,
    help="The executor backend that reaches it (`annealplan plugins` lists them).",
)
@click.option("--url", default=None, help="http: the daemon's URL, e.g. http://127.0.0.1:8765.")
@click.option("--token-file", default=None, help="http: file holding the daemon's bearer token.")
@click.option(
    "--set", "sets", multiple=True, metavar="KEY=VALUE", help="A backend setting (repeat)."
)
@click.option("--replace", is_flag=True, help="Overwrite an executor of that name.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def add(
    obj,
    name: str,
    backend: str,
    url: str | None,
    token_file: str | None,
    sets: tuple[str, ...],
    replace: bool,
    as_json: bool,
) -> None:
    """Register an executor (an http daemon's token file is read at each use, never
    copied), e.g.

    annealplan executors add box1 --url http://127.0.0.1:8765 --token-file ~/.annealplan-token
    """
    from planner.commands.sources import parse_assignments
    from planner.dispatch.registry import add_executor

    settings = parse_assignments(sets, "--set")
    for key, value in (("url", url), ("token_file", token_file)):
        if value is not None:
            settings[key] = value
    registry = obj.registry
    e = add_executor(
        obj.settings.project_dir, registry, name, settings, backend=backend, replace=replace
    )
    if as_json:
        click.echo(json.dumps(_entry_dict(e)))
    else:
        where = registry.executor_backend(e.backend).where(e.settings)
        click.echo(f"added executor {e.name} at {where}")


def _entry_dict(entry) -> dict:
    return {"name": entry.name, "backend": entry.backend, **entry.settings_dict()}


@executors.command("remove")
@click.argument("name")
@click.pass_obj
def remove(obj, name: str) -> None:
    """Forget an executor."""
    from planner.dispatch.registry import remove_executor

    remove_executor(obj.settings.project_dir, obj.registry, name)
    click.echo(f"removed executor {name}")


@executors.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def list_(obj, as_json: bool) -> None:
    """List the registered executors."""
    from planner.dispatch.registry import load_executors

    registry = obj.registry
    entries = load_executors(obj.settings.project_dir, registry)
    if as_json:
        click.echo(json.dumps([_entry_dict(e) for e in entries]))
        return
    if not entries:
        click.echo("no executors registered: sweeps run on a local daemon (127.0.0.1)")
    for e in entries:
        click.echo(f"{e.name:<16} {registry.executor_backend(e.backend).describe(e.settings)}")


@executors.command("health")
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def health(obj, name: str | None, as_json: bool) -> None:
    """Check that each executor answers and speaks this planner's protocol."""
    import asyncio

    from planner.dispatch.registry import connect, load_executors
    from planner.errors import ConfigError, ExecutorError

    project_dir, registry = obj.settings.project_dir, obj.registry
    entries = load_executors(project_dir, registry)
    if name is not None:
        entries = [e for e in entries if e.name == name]
        if not entries:
            raise ConfigError(f"no executor {name!r}; see `annealplan executors list`")
    if not entries:
        raise ConfigError("no executors registered; add one with `annealplan executors add`")

    async def check() -> list[dict]:
        out = []
        for e in entries:
            # One retry at most: a health check says "down" quickly rather than waiting.
            client = connect(registry, e, project_dir, retries=1)
            try:
                h = await client.health()
                out.append({"name": e.name, "ok": h.ok, "protocol": h.protocol, "error": None})
            except ExecutorError as err:
                out.append({"name": e.name, "ok": False, "protocol": None, "error": err.msg})
            finally:
                await client.aclose()
        return out

    rows = asyncio.run(check())
    if as_json:
        click.echo(json.dumps(rows))
    else:
        for r in rows:
            state = f"ok (protocol {r['protocol']})" if r["ok"] else f"DOWN: {r['error']}"
            click.echo(f"{r['name']:<16} {state}")
    if not all(r["ok"] for r in rows):
        raise SystemExit(1)


COMMANDS = [executors]
