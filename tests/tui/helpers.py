"""Small helpers shared by the TUI tests."""

from __future__ import annotations

from typing import Any


async def settle(app: Any, pilot: Any, rounds: int = 2) -> None:
    """Let workers finish and their messages be handled (a worker's message may start
    another worker, hence the rounds)."""
    for _ in range(rounds):
        await pilot.pause()
        await app.workers.wait_for_complete()
        await pilot.pause()


def caught(seen: list[Any], cls: type) -> list[Any]:
    """The distinct messages of type ``cls`` (a bubbling message is seen once per node)."""
    out: dict[int, Any] = {}
    for m in seen:
        if isinstance(m, cls):
            out.setdefault(id(m), m)
    return list(out.values())
