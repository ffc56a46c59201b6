"""Plugins: what is loaded, at which version, what each provides, and what failed to load.

The same facts as ``annealplan plugins``; the registry is collected once at startup, so
this screen only reads it.
"""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.widgets import DataTable, Label, Static

from planner.tui.screens.base import PlannerScreen


class PluginsScreen(PlannerScreen):
    """Loaded plugins, their versions and hooks; load problems below."""

    MODE = "plugins"
    # The main table, not an input, takes focus: digits then switch screens.
    AUTO_FOCUS = "#plugins-table"
    CSS_PATH = "plugins.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [Binding("r", "reload", "Refresh")]

    def compose_body(self) -> ComposeResult:
        with Vertical(id="plugins-body"):
            yield Label("Loaded plugins", classes="section-title")
            yield DataTable(id="plugins-table", cursor_type="row", zebra_stripes=True)
            yield Label("Problems", classes="section-title")
            yield Static(id="plugins-problems", markup=False)

    def on_mount(self) -> None:
        table = self.query_one("#plugins-table", DataTable)
        table.add_columns("plugin", "version", "kind", "provides")
        self.action_reload()

    def action_reload(self) -> None:
        table = self.query_one("#plugins-table", DataTable)
        table.clear()
        registry = self.registry
        for info in sorted(registry.plugins, key=lambda p: (not p.builtin, p.name)):
            provides = ", ".join(p.split(":", 1)[1] for p in info.provides) or "—"
            table.add_row(
                info.name,
                info.version,
                "built-in" if info.builtin else "third-party",
                provides,
                key=info.name,
            )
        problems = registry.problems
        text = "\n".join(str(p) for p in problems) if problems else "none: every plugin loaded"
        self.query_one("#plugins-problems", Static).update(text)
        self.query_one("#plugins-problems").set_class(bool(problems), "has-problems")
