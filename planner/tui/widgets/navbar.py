"""The one-line bar at the top of every screen: where you are and how to go elsewhere."""

from __future__ import annotations

from textual.widgets import Static


class NavBar(Static):
    """``annealplan  1 Sources  2 Jobs …`` with the current screen highlighted.

    Clicking a name switches to that screen, as its digit does.
    """

    DEFAULT_CSS = """
    NavBar {
        height: 1;
        width: 100%;
        background: $panel;
        color: $text;
    }
    """

    def __init__(self, current: str) -> None:
        super().__init__(self.markup_for(current))
        self.current = current

    @staticmethod
    def markup_for(current: str) -> str:
        from planner.tui.app import SCREENS

        parts = ["[b $text-accent] annealplan [/]"]
        for mode, key, label in SCREENS:
            item = f"[b]{key}[/b] {label}"
            if mode == current:
                item = f"[reverse]{item}[/reverse]"
            parts.append(f"[@click=app.switch_mode('{mode}')]{item}[/]")
        return " ".join(parts)
