"""Spread a sweep over executors, follow its jobs, ingest each result exactly once.

Exactly once rests on three facts: the job id is the spec's deterministic id (so a retry or a
re-run of the sweep names the same job), the daemon is idempotent by job id, and the store's
``ingest_result`` is one transaction keyed by the run id. A job already in the store is not
submitted again; a job an executor already knows stays on that executor.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from executors.protocol import JobRecord, JobState
from planner.dispatch.ingest import build_job, result_to_run
from planner.domain import AnnealSpec
from planner.errors import ExecutorReplyError

if TYPE_CHECKING:
    from planner.store import Store
    from plugins.contract import JobSubmitter


@dataclass
class SweepSummary:
    """How a sweep ended.

    Attributes:
        experiment: its name.
        total: planned runs.
        reused: runs already in the store (not submitted again).
        submitted: jobs sent to executors (idempotent: re-sending is harmless).
        succeeded: jobs that finished and whose results are in the store.
        ingested: results this call added (the rest were already there).
        failed: (job id, reason) for failed or cancelled jobs.
        placement: job id → executor name.
    """

    experiment: str
    total: int = 0
    reused: int = 0
    submitted: int = 0
    succeeded: int = 0
    ingested: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    placement: dict[str, str] = field(default_factory=dict)


async def place(job_ids: Sequence[str], clients: Sequence[JobSubmitter]) -> dict[str, JobSubmitter]:
    """Keep jobs an executor already knows there; spread the rest, least loaded first."""
    known: dict[str, JobSubmitter] = {}
    load = {id(c): 0 for c in clients}
    for client in clients:
        try:
            records = await client.jobs()
        except ExecutorReplyError:
            records = []  # unreachable now: it gets no new jobs, polling will retry
            load[id(client)] = 10**9
        for r in records:
            known.setdefault(r.job_id, client)
            if not r.state.final:
                load[id(client)] += 1
    placement: dict[str, JobSubmitter] = {}
    for jid in job_ids:
        if jid in known:
            placement[jid] = known[jid]
            continue
        client = min(clients, key=lambda c: load[id(c)])
        placement[jid] = client
        load[id(client)] += 1
    return placement


async def run_sweep(
    store: Store,
    experiment: str,
    clients: Sequence[JobSubmitter],
    *,
    overrides: Mapping[str, Any] | None = None,
    on_update: Callable[[JobRecord], None] | None = None,
    poll_s: float = 2.0,
    wait: bool = True,
    sleep: Callable[[float], Any] = asyncio.sleep,
) -> SweepSummary:
    """Run an experiment's anneals on ``clients`` and ingest their results.

    Args:
        store: the planner's store (experiment, sources, runs).
        experiment: the experiment's name.
        clients: the executors (at least one).
        overrides: meta keys that win over the experiment's stored meta.
        on_update: called with every fresh job record (progress bars).
        poll_s: seconds between polls.
        wait: False submits and returns without waiting.
        sleep: the pause between polls (tests pass a fake clock).

    Raises:
        ConfigError: the experiment cannot be turned into jobs (nothing is submitted).
        ExecutorError: a job was refused by its executor.
    """
    from planner.errors import ExecutorError

    if not clients:
        raise ExecutorError("no executor to run on; add one with `annealplan executors add`")
    meta, specs = store.experiment(experiment)
    meta = {**meta, **(overrides or {})}
    summary = SweepSummary(experiment, total=len(specs))
    in_store = {r.run_id for r in store.runs()}
    todo = [s for s in specs if s.job_id not in in_store]
    summary.reused = len(specs) - len(todo)
    jobs = {s.job_id: build_job(s, meta, store.source) for s in todo}  # all or nothing
    by_id: dict[str, AnnealSpec] = {s.job_id: s for s in todo}
    placement = await place(list(jobs), clients)
    summary.placement = {jid: c.name for jid, c in placement.items()}
    for jid, job in jobs.items():
        await placement[jid].submit(job)
        summary.submitted += 1
    summary.succeeded = summary.reused
    if not wait:
        return summary
    pending = set(jobs)
    while pending:
        for jid in sorted(pending):
            client = placement[jid]
            try:
                record = await client.job(jid)
            except ExecutorReplyError as e:
                if e.status == 404:
                    # The executor lost the job (a wiped journal): same id, submit again.
                    await client.submit(jobs[jid])
                    continue
                if e.unreachable:
                    continue  # keep the job where it is; the client already backed off
                raise
            if on_update is not None:
                on_update(record)
            if record.state is JobState.SUCCEEDED:
                result = await client.result(jid)
                run, metrics, run_meta = result_to_run(
                    by_id[jid], result, meta, executor=client.name
                )
                if store.ingest_result(run, metrics, run_meta):
                    summary.ingested += 1
                summary.succeeded += 1
                pending.discard(jid)
            elif record.state.final:
                reason = record.error.message if record.error else record.state.value
                summary.failed.append((jid, f"{record.state.value}: {reason}"))
                pending.discard(jid)
        if pending:
            await sleep(poll_s)
    return summary
