"""The annealplan Textual app and its factory.

``make_app(settings, store, registry, client)`` is what ``annealplan tui`` and the tests
both call: the app receives everything it works on and keeps no globals. Each task has a
screen (a Textual *mode*, so each keeps its state while another is shown); the digits 1–6
switch between them and the command palette (ctrl+p) lists every action.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, ClassVar

from textual import on
from textual.app import App, SystemCommand
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.worker import Worker, WorkerState

from planner.errors import AnnealplanError, ConfigError
from planner.tui.widgets.error_modal import ErrorModal

if TYPE_CHECKING:
    from planner.config import Settings
    from planner.store import Store
    from plugins.registry import Registry

#: (mode name, key, label) in the order the navigation bar shows them
SCREENS: tuple[tuple[str, str, str], ...] = (
    ("sources", "1", "Sources"),
    ("jobs", "2", "Jobs"),
    ("laws", "3", "Laws"),
    ("allocation", "4", "Allocation"),
    ("executors", "5", "Executors"),
    ("plugins", "6", "Plugins"),
)


def _lazy(module: str, cls: str) -> Callable[[], Screen[Any]]:
    """A screen factory that imports its module on first use (plotext and friends load
    only when their screen is opened, which keeps the first screen fast)."""

    def build() -> Screen[Any]:
        import importlib

        return getattr(importlib.import_module(f"planner.tui.screens.{module}"), cls)()

    return build


class AnnealplanApp(App[None]):
    """A planning session: sources → sweep → jobs → laws → allocation."""

    CSS_PATH = "app.tcss"
    TITLE = "annealplan"
    MODES: ClassVar[dict[str, Callable[[], Screen[Any]]]] = {
        "sources": _lazy("sources", "SourcesScreen"),
        "jobs": _lazy("jobs", "JobsScreen"),
        "laws": _lazy("laws", "LawsScreen"),
        "allocation": _lazy("allocation", "AllocationScreen"),
        "executors": _lazy("executors", "ExecutorsScreen"),
        "plugins": _lazy("plugins", "PluginsScreen"),
    }
    DEFAULT_MODE = "sources"
    BINDINGS: ClassVar[list[BindingType]] = [
        *(
            Binding(key, f"switch_mode('{mode}')", label, show=False, id=f"goto-{mode}")
            for mode, key, label in SCREENS
        ),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(
        self,
        settings: Settings,
        store: Store,
        registry: Registry,
        client: Any = None,
        *,
        mode: str | None = None,
    ) -> None:
        """See :func:`make_app`."""
        # An instance DEFAULT_MODE makes the first screen the requested one, so a test or
        # `annealplan tui --screen laws` does not build the sources screen first.
        self.DEFAULT_MODE = mode or type(self).DEFAULT_MODE  # type: ignore[misc]
        super().__init__()
        self.settings = settings
        self.store = store
        self.registry = registry
        self.client = client
        #: the executor clients; ``client`` may be one client, several, or None
        self.clients: list[Any] = (
            [] if client is None else list(client) if isinstance(client, list | tuple) else [client]
        )
        if self.DEFAULT_MODE not in self.MODES:
            raise ConfigError(f"unknown screen {mode!r}; choose one of {', '.join(self.MODES)}")
        self.sub_title = str(store.path.name)

    # ------------------------------------------------------------------ errors
    @on(Worker.StateChanged)
    def worker_failed(self, event: Worker.StateChanged) -> None:
        """The one place worker errors surface: our errors as a modal, others as a toast."""
        if event.state is not WorkerState.ERROR:
            return
        error = event.worker.error
        if isinstance(error, AnnealplanError):
            self.show_error(error.title, error.msg)
        elif error is not None:
            detail = "".join(traceback.format_exception(error))
            self.log.error(detail)
            self.notify(
                f"{type(error).__name__}: {error}",
                title="Unexpected error (details in the log)",
                severity="error",
                timeout=10,
            )

    def show_error(self, title: str, message: str) -> None:
        """Open the error modal (also used by screens for errors met on the UI thread)."""
        self.push_screen(ErrorModal(title, message))

    # ------------------------------------------------------------------ palette
    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        for mode, key, label in SCREENS:
            yield SystemCommand(
                f"Go to {label}",
                f"Show the {label.lower()} screen (key {key})",
                lambda mode=mode: self.switch_mode(mode),
            )
        # Screens offer their own main actions (add a source, fit, solve…) to the palette.
        extra = getattr(screen, "palette_commands", None)
        if extra is not None:
            yield from extra()


def make_app(
    settings: Settings,
    store: Store,
    registry: Registry,
    client: Any = None,
    *,
    mode: str | None = None,
) -> AnnealplanApp:
    """Build the app on an open store, a collected plugin registry and an executor client.

    Args:
        settings: the planner's settings (rates, project folder…).
        store: the open store; the app uses it on the UI thread and gives each worker
            thread ``store.cursor()``.
        registry: the plugin registry (source kinds, cost models, law families).
        client: the executor(s) the jobs and executors screens talk to
            (:class:`plugins.contract.JobSubmitter`, one or a list, as
            ``planner.dispatch.registry.open_clients`` yields them); None: sweeps can be
            designed but not run, and the jobs screen says so.
        mode: the screen to open first (``sources`` by default).

    Returns:
        The app, not yet running.
    """
    return AnnealplanApp(settings, store, registry, client, mode=mode)
