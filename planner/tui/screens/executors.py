"""Executors: each executor's health and its queue (``annealplan executors`` and
``annealplan jobs list``), refreshed every few seconds while the screen is shown."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.widgets import DataTable, Label, Static

from planner.tui.messages import ExecutorsChecked
from planner.tui.screens.base import PlannerScreen

if TYPE_CHECKING:
    from plugins.contract import JobSubmitter

REFRESH_SECONDS = 3.0


async def check_executors(clients: Sequence[JobSubmitter]) -> tuple[list[dict], list[dict]]:
    """Health (with round-trip time) and unfinished jobs of every executor."""
    from planner.errors import ExecutorReplyError

    rows, queue = [], []
    for client in clients:
        started = time.perf_counter()
        try:
            health = await client.health()
            records = await client.jobs()
        except ExecutorReplyError as e:
            rows.append({"name": client.name, "url": client.url, "ok": False, "detail": e.msg})
            continue
        ms = (time.perf_counter() - started) * 1000
        counts: dict[str, int] = {}
        for r in records:
            state = r.state.value
            counts[state] = counts.get(state, 0) + 1
            if not r.state.final:
                queue.append(
                    {
                        "executor": client.name,
                        "job_id": r.job_id,
                        "state": state,
                        "step": f"{r.progress.step}/{r.progress.total_steps}"
                        if r.progress.total_steps
                        else "",
                        "experiment": r.labels.get("experiment", ""),
                    }
                )
        detail = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no jobs"
        rows.append(
            {
                "name": client.name,
                "url": client.url,
                "ok": bool(health.ok),
                "protocol": health.protocol,
                "ms": ms,
                "detail": detail,
            }
        )
    return rows, queue


class ExecutorsScreen(PlannerScreen):
    """Which executors answer, and what they are working on."""

    MODE = "executors"
    AUTO_FOCUS = "#executors-table"
    CSS_PATH = "executors.tcss"
    STATUS_ID = "executors-status"
    BINDINGS: ClassVar[list[BindingType]] = [Binding("r", "refresh", "Refresh")]

    def compose_body(self) -> ComposeResult:
        with Vertical(id="executors-body"):
            yield Label("Executors", classes="section-title")
            yield DataTable(id="executors-table", cursor_type="row", zebra_stripes=True)
            yield Label("Queue (unfinished jobs)", classes="section-title")
            yield DataTable(id="executors-queue", cursor_type="row", zebra_stripes=True)
            yield Static("", id="executors-status", markup=False, classes="muted")

    def on_mount(self) -> None:
        table = self.query_one("#executors-table", DataTable)
        for col in ("executor", "url", "health", "protocol", "ms", "jobs"):
            table.add_column(col, key=col)
        queue = self.query_one("#executors-queue", DataTable)
        for col in ("executor", "job", "state", "step", "experiment"):
            queue.add_column(col, key=col)
        if not self.planner.clients:
            self.query_one("#executors-status", Static).update(
                "No executor connected (started with --no-executors): sweeps can be designed "
                "but not run. Without the flag the app uses the executors of "
                "`annealplan executors add`, or starts the local one."
            )
            return
        self.action_refresh()
        self.set_interval(REFRESH_SECONDS, self._tick)

    def _tick(self) -> None:
        if self.is_current:
            self.action_refresh()

    def action_refresh(self) -> None:
        if self.planner.clients:
            self.check()

    @work(exclusive=True, group="executors-check", exit_on_error=False)
    async def check(self) -> None:
        rows, queue = await check_executors(self.planner.clients)
        self.post_message(ExecutorsChecked(rows, queue))

    def on_executors_checked(self, event: ExecutorsChecked) -> None:
        table = self.query_one("#executors-table", DataTable)
        table.clear()
        for r in event.rows:
            table.add_row(
                r["name"],
                r["url"],
                "ok" if r["ok"] else "DOWN",
                r.get("protocol", ""),
                f"{r['ms']:.0f}" if "ms" in r else "",
                r.get("detail", ""),
                key=r["name"],
            )
        queue = self.query_one("#executors-queue", DataTable)
        queue.clear()
        for q in event.queue:
            queue.add_row(q["executor"], q["job_id"], q["state"], q["step"], q["experiment"])
        up = sum(1 for r in event.rows if r["ok"])
        self.query_one("#executors-status", Static).update(
            f"{up}/{len(event.rows)} executors answer · {len(event.queue)} unfinished jobs · "
            f"refreshed every {REFRESH_SECONDS:g} s"
        )
