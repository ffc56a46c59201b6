"""App-wide behaviour: navigation, the command palette, the plugins screen, error routing."""

from __future__ import annotations

import pytest
from textual.widgets import DataTable, Static

from planner.errors import ConfigError, StoreError
from planner.tui.app import SCREENS, make_app
from planner.tui.widgets.error_modal import ErrorModal
from tests.tui.helpers import settle


async def test_digits_switch_screens_at_80x24(settings, store, registry):
    app = make_app(settings, store, registry)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        for mode, key, _label in SCREENS:
            await pilot.press(key)
            await pilot.pause()
            assert app.current_mode == mode
            assert type(app.screen).__name__.lower().startswith(mode[:4])
        await settle(app, pilot)


async def test_palette_lists_screens_and_actions(settings, store, registry):
    app = make_app(settings, store, registry)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        titles = [c.title for c in app.get_system_commands(app.screen)]
        assert "Go to Laws" in titles
        assert "Sources: Add" in titles
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"Go to Plugins")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await settle(app, pilot)
        assert app.current_mode == "plugins"


async def test_plugins_screen_lists_builtins(settings, store, registry):
    app = make_app(settings, store, registry, mode="plugins")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        table = app.screen.query_one("#plugins-table", DataTable)
        names = {str(k.value) for k in table.rows}
        assert "plugins.sources.files" in names and "plugins.costs.linear" in names
        problems = str(app.screen.query_one("#plugins-problems", Static).content)
        assert "every plugin loaded" in problems


async def test_worker_errors_are_routed(settings, store, registry):
    """Our errors open the modal with their title and message; others become a toast."""
    app = make_app(settings, store, registry, mode="plugins")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)

        def fail_ours():
            raise StoreError("the file is locked; close the other annealplan first")

        app.screen.run_worker(fail_ours, thread=True, exit_on_error=False)
        await settle(app, pilot)
        assert isinstance(app.screen, ErrorModal)
        assert app.screen.error_title == "Store problem"
        assert "close the other annealplan" in app.screen.error_message
        await pilot.press("enter")
        await pilot.pause()

        def fail_other():
            raise RuntimeError("boom")

        app.screen.run_worker(fail_other, thread=True, exit_on_error=False)
        await settle(app, pilot)
        assert not isinstance(app.screen, ErrorModal)
        assert any("boom" in n.message for n in app._notifications)


def test_unknown_start_screen_is_a_config_error(settings, store, registry):
    with pytest.raises(ConfigError, match="choose one of"):
        make_app(settings, store, registry, mode="nope")
