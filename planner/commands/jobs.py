"""``annealplan sweep run`` and ``annealplan jobs list/show/logs/cancel``.

With no executor registered (``annealplan executors add``), each command starts the
embedded local daemon on 127.0.0.1 for its duration; its journal persists, so a sweep that
was interrupted resumes where it stopped when run again.
"""

from __future__ import annotations

import json
from typing import Any

import click


def _training_fields(items: tuple[str, ...]) -> dict[str, Any]:
    """``--train KEY=VALUE`` flags as a table (a value is JSON when it parses as JSON)."""
    from planner.errors import ConfigError

    fields: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--train {item!r}: write KEY=VALUE, e.g. seq_len=512")
        try:
            fields[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            fields[key.strip()] = value
    return fields


def sweep_overrides(
    store: Any,
    experiment: str,
    *,
    base_model: str | None,
    replay: str | None,
    tasks: tuple[str, ...],
    task_dirs: tuple[str, ...],
    limit: int | None,
    training: tuple[str, ...],
) -> dict[str, Any]:
    """What ``sweep run``'s flags override in EXPERIMENT's stored meta (``run_sweep``'s
    ``overrides``), by the merge the TUI's run form uses too.

    Raises:
        ConfigError: a ``--train`` item is not KEY=VALUE. StoreError: no such experiment.
    """
    from planner.dispatch.session import SweepOverrides, merge_overrides

    given = SweepOverrides(
        base_model=base_model,
        replay=replay,
        tasks=tasks,
        task_dirs=task_dirs,
        limit=limit,
        training=_training_fields(training),
    )
    meta, _ = store.experiment(experiment)
    return merge_overrides(meta, given)


@click.group("sweep")
def sweep() -> None:
    """Run a designed sweep on the executors."""


@sweep.command("run")
@click.argument("experiment")
@click.option("--base-model", help="Checkpoint folder, relative to the executor's root.")
@click.option("--replay", help="Registered source used as replay data.")
@click.option("--task", "tasks", multiple=True, help="lm-eval task (repeat).")
@click.option("--task-dir", "task_dirs", multiple=True, help="Task YAML folder (repeat).")
@click.option("--limit", type=int, help="lm-eval documents per task.")
@click.option("--train", "training", multiple=True, help="Training field KEY=VALUE (repeat).")
@click.option("--executor", "only", help="Use only this registered executor.")
@click.option("--poll", type=float, default=2.0, show_default=True, help="Seconds between polls.")
@click.option("--no-wait", is_flag=True, help="Submit and return.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.pass_obj
def run(
    obj,
    experiment: str,
    base_model: str | None,
    replay: str | None,
    tasks: tuple[str, ...],
    task_dirs: tuple[str, ...],
    limit: int | None,
    training: tuple[str, ...],
    only: str | None,
    poll: float,
    no_wait: bool,
    as_json: bool,
) -> None:
    """Submit EXPERIMENT's anneals, follow them, and ingest each result once."""
    import asyncio
    import sys

    from planner.dispatch.registry import open_clients
    from planner.dispatch.scheduler import run_sweep

    store = obj.store
    overrides = sweep_overrides(
        store,
        experiment,
        base_model=base_model,
        replay=replay,
        tasks=tasks,
        task_dirs=task_dirs,
        limit=limit,
        training=training,
    )

    async def go(on_update):
        async with open_clients(obj.settings.project_dir, obj.registry, only=only) as clients:
            return await run_sweep(
                store,
                experiment,
                clients,
                overrides=overrides,
                on_update=on_update,
                poll_s=poll,
                wait=not no_wait,
            )

    if not as_json and sys.stderr.isatty():
        summary = _with_progress_bars(lambda on_update: asyncio.run(go(on_update)))
    else:
        summary = asyncio.run(go(None))
    _print_summary(summary, as_json)
    if summary.failed:
        raise SystemExit(1)


def _with_progress_bars(follow):
    """Run ``follow(on_update)`` with one progress bar per job on stderr; its result."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[state]}"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
    ) as progress:
        bars: dict[str, Any] = {}

        def on_update(record) -> None:
            if record.job_id not in bars:
                label = record.labels.get("source", "") or record.job_id[:12]
                bars[record.job_id] = progress.add_task(f"{label:<14}", total=1.0, state="")
            p = record.progress
            done = p.step / p.total_steps if p.total_steps else 0.0
            if record.state.final:
                done = 1.0
            loss = f" loss {p.loss:.3f}" if p.loss is not None else ""
            progress.update(
                bars[record.job_id], completed=done, state=f"{record.state.value}{loss}"
            )

        return follow(on_update)


def _print_summary(summary, as_json: bool) -> None:
    """How the sweep ended: one JSON object, or a line and one line per failed job."""
    if as_json:
        click.echo(
            json.dumps(
                {
                    "experiment": summary.experiment,
                    "total": summary.total,
                    "reused": summary.reused,
                    "submitted": summary.submitted,
                    "succeeded": summary.succeeded,
                    "ingested": summary.ingested,
                    "failed": [{"job_id": j, "reason": r} for j, r in summary.failed],
                    "placement": summary.placement,
                }
            )
        )
        return
    click.echo(
        f"{summary.experiment}: {summary.succeeded}/{summary.total} succeeded "
        f"({summary.ingested} ingested now, {summary.reused} already in the store), "
        f"{len(summary.failed)} failed"
    )
    for jid, reason in summary.failed:
        click.echo(f"  {jid}: {reason}")


@click.group("jobs")
def jobs() -> None:
    """Jobs on the executors: list, show, logs, cancel."""


def _run(obj, only: str | None, fn):
    import asyncio

    from planner.dispatch.registry import open_clients

    async def go():
        async with open_clients(obj.settings.project_dir, obj.registry, only=only) as clients:
            return await fn(clients)

    return asyncio.run(go())


async def _find(clients, job_id: str):
    """The client that knows ``job_id`` and its record."""
    from planner.errors import ExecutorError, ExecutorReplyError

    for c in clients:
        try:
            return c, await c.job(job_id)
        except ExecutorReplyError as e:
            if e.status != 404:
                raise
    raise ExecutorError(f"no executor knows job {job_id}; see `annealplan jobs list`")


def _record_dict(record, executor: str) -> dict[str, Any]:
    return {"executor": executor, **record.model_dump(mode="json")}


@jobs.command("list")
@click.option("--executor", "only", help="Only this executor.")
@click.option(
    "--state",
    type=click.Choice(
        [
            s
            for s in (
                "queued",
                "materializing",
                "training",
                "evaluating",
                "succeeded",
                "failed",
                "cancelled",
            )
        ]
    ),
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def list_(obj, only: str | None, state: str | None, as_json: bool) -> None:
    """List jobs on every executor."""
    from executors.protocol import JobState

    async def fetch(clients):
        rows = []
        for c in clients:
            for r in await c.jobs(JobState(state) if state else None):
                rows.append(_record_dict(r, c.name))
        return rows

    rows = _run(obj, only, fetch)
    if as_json:
        click.echo(json.dumps(rows))
        return
    if not rows:
        click.echo("no jobs")
    for r in rows:
        p = r["progress"]
        steps = f"{p['step']}/{p['total_steps']}" if p["total_steps"] else "-"
        click.echo(
            f"{r['job_id']:<28} {r['state']:<13} {steps:>11}  {r['executor']:<10} "
            f"{r['labels'].get('source', '')}"
        )


@jobs.command("show")
@click.argument("job_id")
@click.option("--executor", "only", help="Only this executor.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def show(obj, job_id: str, only: str | None, as_json: bool) -> None:
    """Show one job (and its result once it succeeded)."""

    async def fetch(clients):
        client, record = await _find(clients, job_id)
        data = _record_dict(record, client.name)
        if record.state.value == "succeeded":
            data["result"] = (await client.result(job_id)).model_dump(mode="json")
        return data

    data = _run(obj, only, fetch)
    if as_json:
        click.echo(json.dumps(data))
        return
    p = data["progress"]
    click.echo(f"{data['job_id']} on {data['executor']}: {data['state']}")
    click.echo(
        f"  attempts {data['attempts']}, step {p['step']}/{p['total_steps']}, "
        f"loss {p['loss']}, tokens/s {p['tokens_per_s']}"
    )
    if data.get("error"):
        click.echo(f"  error: {data['error']['code']}: {data['error']['message']}")
    for name, value in sorted((data.get("result") or {}).get("metrics", {}).items()):
        click.echo(f"  {name} = {value:.4g}")


@jobs.command("logs")
@click.argument("job_id")
@click.option("--executor", "only", help="Only this executor.")
@click.option("--offset", type=int, default=0, show_default=True, help="Start at this byte.")
@click.option("--follow", "-f", is_flag=True, help="Keep printing until the job is final.")
@click.pass_obj
def logs(obj, job_id: str, only: str | None, offset: int, follow: bool) -> None:
    """Print a job's log."""
    import asyncio

    async def fetch(clients):
        client, _ = await _find(clients, job_id)
        pos = offset
        while True:
            chunk = await client.log(job_id, pos)
            if chunk.text:
                click.echo(chunk.text, nl=False)
            if chunk.next_offset == pos:
                if chunk.final or not follow:
                    return
                await asyncio.sleep(1.0)
            pos = chunk.next_offset

    _run(obj, only, fetch)


@jobs.command("cancel")
@click.argument("job_id")
@click.option("--executor", "only", help="Only this executor.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def cancel(obj, job_id: str, only: str | None, as_json: bool) -> None:
    """Cancel a job (its whole process group is killed). Idempotent."""

    async def go(clients):
        client, _ = await _find(clients, job_id)
        return _record_dict(await client.cancel(job_id), client.name)

    data = _run(obj, only, go)
    if as_json:
        click.echo(json.dumps(data))
    else:
        final = data["state"] in ("succeeded", "failed", "cancelled")
        click.echo(f"{job_id}: {data['state']}{'' if final else ' (cancelling)'}")


COMMANDS = [sweep, jobs]
