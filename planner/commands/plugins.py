"""``annealplan plugins``: the installed plugins, what they provide, and load problems."""

from __future__ import annotations

import json

import click


@click.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def plugins(obj, as_json: bool) -> None:
    """List plugins (built-in and installed): name, version, hooks, and any problems."""
    registry = obj.registry
    if as_json:
        data = {
            "plugins": [
                {
                    "name": p.name,
                    "version": p.version,
                    "hooks": list(p.hooks),
                    "builtin": p.builtin,
                    "provides": list(p.provides),
                }
                for p in registry.plugins
            ],
            "problems": [
                {"plugin": q.plugin, "hook": q.hook or None, "message": q.message}
                for q in registry.problems
            ],
        }
        click.echo(json.dumps(data, indent=2))
        return
    for p in registry.plugins:
        tag = " (built-in)" if p.builtin else ""
        provides = ", ".join(x.split(":", 1)[1] for x in p.provides) or "-"
        click.echo(f"{p.name} {p.version}{tag}: {', '.join(p.hooks)} → {provides}")
    for q in registry.problems:
        click.echo(f"problem: {q}", err=True)


COMMANDS = [plugins]
