"""``annealplan tui``: the Textual app on the project's store (also ``annealplan`` alone)."""

from __future__ import annotations

import click

SCREEN_NAMES = ("sources", "jobs", "laws", "allocation", "executors", "plugins")


@click.command("tui")
@click.option(
    "--screen",
    type=click.Choice(SCREEN_NAMES),
    default=None,
    help="The screen to open first (default: sources).",
)
@click.option(
    "--no-executors",
    is_flag=True,
    help="Do not connect to executors (nor start the local one): sweeps can be designed, not run.",
)
@click.pass_obj
def tui(obj, screen: str | None, no_executors: bool) -> None:
    """Open the terminal app: sources, sweeps and jobs, laws, allocation."""
    import asyncio

    # Imported here so `annealplan --help` does not load Textual.
    from planner.tui.app import make_app

    settings, store, registry = obj.settings, obj.store, obj.registry

    async def main() -> None:
        if no_executors:
            await make_app(settings, store, registry, None, mode=screen).run_async()
            return
        from planner.dispatch.registry import open_clients

        # The same executors `annealplan sweep run` uses: the registered ones, or the
        # embedded local daemon for as long as the app runs. The clients live on the
        # app's event loop, where its async workers use them.
        async with open_clients(settings.project_dir, registry) as clients:
            await make_app(settings, store, registry, clients, mode=screen).run_async()

    asyncio.run(main())


COMMANDS = [tui]
