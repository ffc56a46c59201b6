"""Confirm a plan: run its mixed anneal as a real job and store the gain it measured.

A plan's gain is predicted from single-source laws combined by a rule; its
:class:`~planner.domain.Confirmation` is one anneal of the chosen mix, scaled down, that
tests the rule. :func:`confirm_plan` runs it the way the plan's sweep ran: the same base
model, replay data and share, training and evaluation (the experiment the study's control
anneal came from), through the same executors and the same idempotent submission.

- The job id is stable (the experiment, the tokens per source, the replay share and the
  seed), so running ``confirm`` again reuses the finished run instead of training again,
  and two plans that propose the same mixture share one run.
- The run is stored once (primary key = job id) as a mixed run: its source is the
  mixture's name (``a@0.6+b@0.4``, never fitted as a source of its own) and its tokens per
  source are kept (``store.mixtures()``), so a later fit can learn how gains combine.
- The measured gain is the run's value of the plan's metric over the mean of the study's
  control anneals, the sign turned for a metric where lower is better; it is written into
  the stored plan's confirmation with the run's id.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from executors.protocol import AnnealJobSpec, JobRecord, JobState
from planner.dispatch.ingest import build_job, build_mixed_job, result_to_run
from planner.dispatch.scheduler import place
from planner.domain import (
    AnnealSpec,
    Confirmation,
    Plan,
    is_control,
    lower_is_better,
    stable_id,
)
from planner.errors import ConfigError, ExecutorError, ExecutorReplyError

if TYPE_CHECKING:
    from planner.store import Store
    from plugins.contract import JobSubmitter
    from plugins.registry import Registry

#: what a plan's confirmation run is recorded as (``Run.origin``)
ORIGIN = "confirm"


@dataclass(frozen=True, slots=True)
class ConfirmationJob:
    """A plan's confirmation anneal, ready to submit.

    Attributes:
        plan_id, plan: the stored plan (its id resolved when asked for ``latest``).
        study: the study its laws were fitted in; the run lands there.
        experiment: the sweep whose settings the anneal reuses.
        spec: the planned run (job id, mixture name, total source tokens, replay share,
            seed).
        tokens_per_source: each source's tokens, whole.
        job: the executor's job.
    """

    plan_id: str
    plan: Plan
    study: str
    experiment: str
    spec: AnnealSpec
    tokens_per_source: Mapping[str, int]
    job: AnnealJobSpec

    @property
    def mixed(self) -> bool:
        """True when it trains on two or more sources (one is a plain source's run)."""
        return len(self.tokens_per_source) > 1


def confirm_plan(
    store: Store,
    registry: Registry,
    project_dir: Path,
    plan_id: str = "latest",
    *,
    executor: str | None = None,
    on_update: Callable[[JobRecord], None] | None = None,
    poll_s: float = 2.0,
) -> Confirmation:
    """Run a stored plan's confirmation anneal (or reuse its finished run) and store the
    gain it measured in the plan.

    Blocking: it starts the executors (the embedded local daemon when none is registered),
    waits for the job and closes them. From a running event loop use
    :func:`run_confirmation` with clients of your own.

    Args:
        store: the project's store.
        registry: the plugin registry (its executor backends).
        project_dir: the project folder (``executors.toml``; the embedded daemon's root).
        plan_id: a stored plan's id, or ``"latest"`` for the newest.
        executor: run on this registered executor only (``"local"``: the embedded daemon);
            None: every registered executor, or the embedded daemon when none is.
        on_update: called with every fresh record of the job (progress).
        poll_s: seconds between polls.

    Returns:
        The plan's confirmation with ``measured_gain`` and ``run_id`` set (as stored).

    Raises:
        StoreError: no such plan (the message says how to list them), or a source of the
            mixture is not registered.
        ConfigError: the plan funds nothing (no confirmation), or its study has no sweep
            or no control anneal to measure against.
        ExecutorError: the job was refused, failed or was cancelled.
    """
    from planner.dispatch.registry import open_clients

    # Everything that can be checked without an executor is, before one starts.
    prepared = prepare_confirmation(store, plan_id)

    async def go() -> Confirmation:
        if store.has_run(prepared.spec.job_id):
            return record_confirmation(store, prepared)
        async with open_clients(Path(project_dir), registry, only=executor) as clients:
            return await run_confirmation(
                store, prepared, clients, on_update=on_update, poll_s=poll_s
            )

    return asyncio.run(go())


async def run_confirmation(
    store: Store,
    prepared: ConfirmationJob,
    clients: Sequence[JobSubmitter],
    *,
    on_update: Callable[[JobRecord], None] | None = None,
    poll_s: float = 2.0,
    sleep: Callable[[float], Any] = asyncio.sleep,
) -> Confirmation:
    """Submit the confirmation job (unless its run is stored), wait, ingest it once, and
    store the measured gain in the plan (see :func:`confirm_plan`).

    Raises:
        ExecutorError: no executor, or the job was refused, failed or was cancelled.
    """
    jid = prepared.spec.job_id
    if not store.has_run(jid):
        if not clients:
            raise ExecutorError("no executor to run on; add one with `annealplan executors add`")
        client = (await place([jid], clients))[jid]
        await client.submit(prepared.job)
        await _follow(store, prepared, client, on_update, poll_s, sleep)
    return record_confirmation(store, prepared)


def prepare_confirmation(store: Store, plan_id: str) -> ConfirmationJob:
    """The job that confirms a stored plan, from the plan, its study's sweep and the
    registered sources.

    Raises:
        StoreError: no such plan, or a source of the mixture is not registered.
        ConfigError: no confirmation, no sweep or no control anneal to compare with.
    """
    pid, plan = store.plan(plan_id)
    conf = plan.confirmation
    if conf is None:
        raise ConfigError(
            f"plan {pid} funds no source, so it has no mixed anneal to confirm; allocate a "
            "budget that buys some tokens (`annealplan allocate --budget BUDGET`) and "
            "confirm that plan"
        )
    study = _study_of(store, pid, plan)
    experiment = _experiment_of(store, study)
    meta, specs = store.experiment(experiment)
    _control_value(store, study, plan.metric)  # fail now, not after the anneal
    tokens = {name: round(t) for name, t in conf.tokens_per_source.items() if t > 0}
    if not tokens:
        raise ConfigError(f"plan {pid}'s confirmation names no tokens; allocate again")
    replay_fraction, seed = _sweep_setup(meta, specs)
    jid = stable_id("confirm", experiment, sorted(tokens.items()), replay_fraction, seed)
    name = conf.source if len(tokens) > 1 else next(iter(tokens))
    spec = AnnealSpec(jid, experiment, name, float(sum(tokens.values())), replay_fraction, seed)
    if len(tokens) > 1:
        job = build_mixed_job(spec, tokens, meta, store.source)
    else:
        job = build_job(spec, meta, store.source)
    return ConfirmationJob(pid, plan, study, experiment, spec, tokens, job)


def record_confirmation(store: Store, prepared: ConfirmationJob) -> Confirmation:
    """The measured gain of the stored confirmation run, written into the plan (nothing
    is written when the plan already says so).

    Raises:
        ConfigError: the run did not measure the plan's metric, or no control did.
    """
    plan = prepared.plan
    run_id = prepared.spec.job_id
    observed = store.observations(study=prepared.study, metric=plan.metric)
    values = [o.value for o in observed if o.run_id == run_id]
    if not values:
        raise ConfigError(
            f"the confirmation run {run_id} measured no {plan.metric!r}; check the "
            "experiment's evaluation tasks (`annealplan runs list` shows what each run measured)"
        )
    control = _control_value(store, prepared.study, plan.metric)
    gain = values[0] - control
    if lower_is_better(plan.metric, store.metric_directions()):
        gain = -gain
    assert plan.confirmation is not None  # prepare_confirmation checked it
    done = dataclasses.replace(plan.confirmation, measured_gain=float(gain), run_id=run_id)
    if done != plan.confirmation:
        store.update_plan(prepared.plan_id, dataclasses.replace(plan, confirmation=done))
    return done


# ----------------------------------------------------------------- helpers
async def _follow(
    store: Store,
    prepared: ConfirmationJob,
    client: JobSubmitter,
    on_update: Callable[[JobRecord], None] | None,
    poll_s: float,
    sleep: Callable[[float], Any],
) -> None:
    """Wait for the job to end and ingest its result once (as ``run_sweep`` follows a
    sweep's jobs).

    Raises:
        ExecutorError: the job failed or was cancelled.
    """
    jid = prepared.spec.job_id
    while True:
        try:
            record = await client.job(jid)
        except ExecutorReplyError as e:
            if e.status == 404:
                await client.submit(prepared.job)  # the executor lost it: same id again
            elif not e.unreachable:
                raise
            await sleep(poll_s)
            continue
        if on_update is not None:
            on_update(record)
        if record.state is JobState.SUCCEEDED:
            break
        if record.state.final:
            reason = record.error.message if record.error else record.state.value
            raise ExecutorError(
                f"the confirmation anneal {jid} {record.state.value} on {client.name}: "
                f"{reason}; its log: `annealplan jobs logs {jid}`; once fixed, run "
                f"`annealplan confirm {prepared.plan_id}` again"
            )
        await sleep(poll_s)
    result = await client.result(jid)
    meta, _ = store.experiment(prepared.experiment)
    run, metrics, run_meta = result_to_run(prepared.spec, result, meta, executor=client.name)
    run = dataclasses.replace(run, study=prepared.study, origin=ORIGIN)
    run_meta["plan_id"] = prepared.plan_id
    run_meta["tokens_per_source"] = dict(prepared.tokens_per_source)
    store.ingest_result(
        run,
        metrics,
        run_meta,
        tokens_per_source=dict(prepared.tokens_per_source) if prepared.mixed else None,
    )


def _study_of(store: Store, plan_id: str, plan: Plan) -> str:
    """The study a plan's laws were fitted in: its options', its fits', or the only one."""
    if plan.options is not None and plan.options.study:
        return plan.options.study
    studies = store.fit_studies(plan.fit_ids)
    if len(studies) == 1:
        return studies[0]
    if not studies:
        studies = sorted({r.study for r in store.runs()})
        if len(studies) == 1:
            return studies[0]
    raise ConfigError(
        f"cannot tell which study plan {plan_id} was made for (its fits are in "
        f"{', '.join(studies) or 'no stored study'}); allocate again with --study STUDY and "
        "confirm that plan"
    )


def _experiment_of(store: Store, study: str) -> str:
    """The sweep whose settings the confirmation reuses: the one the study's control
    anneal ran in, else the only experiment of the study."""
    known = store.experiments()
    from_controls = sorted(
        {
            str(store.run_meta(r.run_id).get("experiment") or "")
            for r in store.runs(study=study)
            if is_control(r.source)
        }
        & set(known)
    )
    if len(from_controls) == 1:
        return from_controls[0]
    of_study = [
        name for name in known if str(store.experiment(name)[0].get("study") or name) == study
    ]
    candidates = from_controls or of_study
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise ConfigError(
            f"no sweep of study {study!r} is stored, so nothing says how to train the "
            "confirmation anneal (base model, replay, training, evaluation); design one with "
            "`annealplan design` and run it with `annealplan sweep run`"
        )
    raise ConfigError(
        f"study {study!r} was swept by several experiments ({', '.join(candidates)}); "
        "the confirmation cannot tell whose settings to reuse"
    )


def _control_value(store: Store, study: str, metric: str) -> float:
    """The mean of the study's control anneals on ``metric``.

    Raises:
        ConfigError: no control anneal measured it.
    """
    values = [
        o.value for o in store.observations(study=study, metric=metric) if is_control(o.source)
    ]
    if not values:
        raise ConfigError(
            f"no control anneal of study {study!r} measured {metric!r}, so a gain has nothing "
            "to be measured against; run the sweep's control anneal (`annealplan sweep run`)"
        )
    return float(sum(values) / len(values))


def _sweep_setup(meta: Mapping[str, Any], specs: Sequence[AnnealSpec]) -> tuple[float, int]:
    """The replay share and seed the sweep's source anneals used (the most common)."""
    sourced = [s for s in specs if not s.is_control]
    if meta.get("replay_fraction") is not None:
        fraction = float(meta["replay_fraction"])
    elif sourced:
        fraction = Counter(s.replay_fraction for s in sourced).most_common(1)[0][0]
    else:
        fraction = 0.0
    seed = Counter(s.seed for s in sourced).most_common(1)[0][0] if sourced else 0
    return float(fraction), int(seed)
