"""``annealplan executors add/list/remove/health``: the executor daemons of a project."""

from __future__ import annotations

import json

import click


@click.group("executors")
def executors() -> None:
    """Executor daemons that run anneals (none registered: a local one is started)."""


@executors.command("add")
@click.argument("name")
@click.option("--url", required=True, help="The daemon's URL, e.g. http://127.0.0.1:8765.")
@click.option("--token-file", required=True, help="File holding the daemon's bearer token.")
@click.option("--replace", is_flag=True, help="Overwrite an executor of that name.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def add(obj, name: str, url: str, token_file: str, replace: bool, as_json: bool) -> None:
    """Register an executor daemon (its token file is read at each use, never copied)."""
    from planner.dispatch.registry import add_executor

    e = add_executor(obj.settings.project_dir, name, url, token_file, replace=replace)
    if as_json:
        click.echo(json.dumps({"name": e.name, "url": e.url, "token_file": e.token_file}))
    else:
        click.echo(f"added executor {e.name} at {e.url}")


@executors.command("remove")
@click.argument("name")
@click.pass_obj
def remove(obj, name: str) -> None:
    """Forget an executor."""
    from planner.dispatch.registry import remove_executor

    remove_executor(obj.settings.project_dir, name)
    click.echo(f"removed executor {name}")


@executors.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def list_(obj, as_json: bool) -> None:
    """List the registered executors."""
    from planner.dispatch.registry import load_executors

    entries = load_executors(obj.settings.project_dir)
    rows = [{"name": e.name, "url": e.url, "token_file": e.token_file} for e in entries]
    if as_json:
        click.echo(json.dumps(rows))
        return
    if not rows:
        click.echo("no executors registered: sweeps run on a local daemon (127.0.0.1)")
    for r in rows:
        click.echo(f"{r['name']:<16} {r['url']:<32} {r['token_file']}")


@executors.command("health")
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def health(obj, name: str | None, as_json: bool) -> None:
    """Check that each executor answers and speaks this planner's protocol."""
    import asyncio

    from planner.dispatch.client import ExecutorClient, read_token
    from planner.dispatch.registry import load_executors
    from planner.errors import ConfigError, ExecutorError

    entries = load_executors(obj.settings.project_dir)
    if name is not None:
        entries = [e for e in entries if e.name == name]
        if not entries:
            raise ConfigError(f"no executor {name!r}; see `annealplan executors list`")
    if not entries:
        raise ConfigError("no executors registered; add one with `annealplan executors add`")

    async def check() -> list[dict]:
        out = []
        for e in entries:
            client = ExecutorClient(e.url, read_token(e.token_file), name=e.name, retries=1)
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
