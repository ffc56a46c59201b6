"""What every screen shares: the navigation bar, the footer and typed access to the app."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, ClassVar

from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Static
from textual.worker import Worker, WorkerState

from planner.tui.widgets.navbar import NavBar

if TYPE_CHECKING:
    from planner.store import Store
    from planner.tui.app import AnnealplanApp
    from plugins.registry import Registry


def forward_worker_error(node: Any, event: Worker.StateChanged) -> None:
    """Hand a failed worker to the app's one error handler.

    ``Worker.StateChanged`` does not bubble, so each screen passes its workers' failures
    up; the app decides how to show them (modal for our errors, toast for the rest).
    """
    if event.state is WorkerState.ERROR:
        node.app.post_message(Worker.StateChanged(event.worker, event.state))


class PlannerScreen(Screen[None]):
    """A task screen: subclasses yield their body from :meth:`compose_body`."""

    #: the mode name, for the navigation bar
    MODE: ClassVar[str] = ""
    BINDINGS: ClassVar[list[Any]] = [
        Binding("escape", "leave_input", "Leave input", show=False),
    ]
    #: a one-line Static that says what the screen is doing (cleared when a worker fails)
    STATUS_ID: ClassVar[str] = ""

    @property
    def planner(self) -> AnnealplanApp:
        return self.app  # type: ignore[return-value]

    @property
    def store(self) -> Store:
        return self.planner.store

    @property
    def registry(self) -> Registry:
        return self.planner.registry

    def action_leave_input(self) -> None:
        """Escape from an input back to the screen's main table (where keys are commands)."""
        if self.AUTO_FOCUS:
            for widget in self.query(self.AUTO_FOCUS):
                widget.focus()
                return

    def compose(self) -> ComposeResult:
        yield NavBar(self.MODE)
        yield from self.compose_body()
        yield Footer()

    def compose_body(self) -> ComposeResult:
        yield from ()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        forward_worker_error(self, event)
        if event.state is WorkerState.ERROR and self.STATUS_ID:
            error = event.worker.error
            title = getattr(error, "title", type(error).__name__)
            for status in self.query(f"#{self.STATUS_ID}").results(Static):
                status.update(f"{title} (see the message)")

    def palette_commands(self) -> Iterable[SystemCommand]:
        """Commands this screen adds to the command palette (its main actions)."""
        for binding in self.BINDINGS:
            if isinstance(binding, tuple) or not binding.show or not binding.description:
                continue
            yield SystemCommand(
                f"{self.MODE.capitalize()}: {binding.description}",
                binding.tooltip or f"key {binding.key}",
                lambda action=binding.action: self.run_action(action),
            )
