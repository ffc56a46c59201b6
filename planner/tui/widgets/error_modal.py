"""The modal that tells a person what went wrong and what to do next."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static


class ErrorModal(ModalScreen[None]):
    """Shows an :class:`~planner.errors.AnnealplanError`'s title and message.

    The message already says what to do (the errors module's rule), so the modal only adds
    a way out: Enter, Escape or the button.
    """

    DEFAULT_CSS = """
    ErrorModal {
        align: center middle;
    }
    ErrorModal > Vertical {
        width: 70;
        max-width: 95%;
        height: auto;
        max-height: 90%;
        border: thick $error;
        background: $surface;
        padding: 1 2;
    }
    ErrorModal #error-title {
        text-style: bold;
        color: $error;
        margin-bottom: 1;
    }
    ErrorModal #error-message {
        height: auto;
        margin-bottom: 1;
    }
    ErrorModal.-info > Vertical {
        border: thick $accent;
    }
    ErrorModal.-info #error-title {
        color: $text-accent;
    }
    ErrorModal Button {
        width: 100%;
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,enter", "dismiss_error", "Close", show=False)
    ]

    def __init__(self, title: str, message: str, *, kind: str = "error") -> None:
        super().__init__()
        self.error_title = title
        self.error_message = message
        #: "error", or "info" for a plain read-only message (a plan's notes)
        self.kind = kind
        self.set_class(kind == "info", "-info")

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(self.error_title, id="error-title", markup=False)
            yield Static(self.error_message, id="error-message", markup=False)
            yield Button("OK", variant="primary" if self.kind == "info" else "error", id="error-ok")

    def on_mount(self) -> None:
        self.query_one(Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss()

    def action_dismiss_error(self) -> None:
        self.dismiss()
