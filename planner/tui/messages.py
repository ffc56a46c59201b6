"""App events: what workers report back to the screens (past tense, attributes only).

Workers run core code in threads and post one of these; they never touch widgets. Progress
messages define ``can_replace`` so a burst of updates coalesces into the newest one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from textual.message import Message

if TYPE_CHECKING:
    from planner.domain import AnnealSpec, FrontierPoint, LawFit, Observation, Plan, Source
    from planner.tui.rows import SourceRow


class SourcesLoaded(Message):
    """The sources table and the store's counts were read."""

    def __init__(
        self, sources: Sequence[Source], counts: Mapping[str, int], rows: Sequence[SourceRow]
    ) -> None:
        super().__init__()
        self.sources = list(sources)
        self.counts = dict(counts)
        self.rows = list(rows)


class SourceSaved(Message):
    """A source was added or replaced in the store."""

    def __init__(self, source: Source, replaced: bool) -> None:
        super().__init__()
        self.source = source
        self.replaced = replaced


class SourceRemoved(Message):
    """A source was removed from the store."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name


class CostPreviewed(Message):
    """A source's curation cost for a token count was computed."""

    def __init__(
        self, source: str, tokens: float, cost: float | None, unit: str, text: str
    ) -> None:
        super().__init__()
        self.source = source
        self.tokens = tokens
        self.cost = cost
        self.unit = unit
        self.text = text


@dataclass(frozen=True, slots=True)
class MetricData:
    """What the Laws screen draws for one (study, metric)."""

    study: str
    metric: str
    observations: tuple[Observation, ...]
    fits: tuple[tuple[str, LawFit], ...]
    curves: Mapping[str, Any] = field(default_factory=dict)
    crossovers: tuple[Any, ...] = ()
    compute_unit: str = ""
    #: P(a beats b) per pair of sources (``planner.laws.decision.PairBelief``) at
    #: ``beliefs_at``, the end of the drawn range
    beliefs: tuple[Any, ...] = ()
    beliefs_at: float = float("nan")


class MetricsListed(Message):
    """The (study, metric) pairs in the store were listed."""

    def __init__(self, pairs: Sequence[tuple[str, str]]) -> None:
        super().__init__()
        self.pairs = list(pairs)


class LawsLoaded(Message):
    """Runs, stored fits and their curves for one metric were read."""

    def __init__(self, data: MetricData) -> None:
        super().__init__()
        self.data = data


class FitFinished(Message):
    """Laws were fitted and saved for one metric."""

    def __init__(self, study: str, metric: str, fit_ids: Sequence[str], fits: Sequence[LawFit]):
        super().__init__()
        self.study = study
        self.metric = metric
        self.fit_ids = list(fit_ids)
        self.fits = list(fits)


class PlanSolved(Message):
    """An allocation was solved (and saved) for a budget."""

    def __init__(self, plan_id: str, plan: Plan, frontier: Any = None, point: Any = None):
        super().__init__()
        self.plan_id = plan_id
        self.plan = plan
        self.frontier = frontier
        self.point = point


class FrontierComputed(Message):
    """The frontier around a stored plan's budget was computed (``problem``: why not)."""

    def __init__(self, plan_id: str, frontier: Sequence[FrontierPoint], problem: str = ""):
        super().__init__()
        self.plan_id = plan_id
        self.frontier = list(frontier)
        self.problem = problem


class PlansLoaded(Message):
    """Stored plans (the newest first) and the fitted (study, metric) pairs were read."""

    def __init__(
        self, plans: Sequence[tuple[str, Plan]], groups: Sequence[tuple[str, str]] = ()
    ) -> None:
        super().__init__()
        self.plans = list(plans)
        self.groups = list(groups)


class NextRunRecommended(Message):
    """The design room's "what to run next" answered."""

    def __init__(self, text: str, detail: Any = None) -> None:
        super().__init__()
        self.text = text
        self.detail = detail


class SweepDesigned(Message):
    """A sweep was designed and stored as an experiment."""

    def __init__(self, name: str, specs: Sequence[AnnealSpec], meta: Mapping[str, Any]) -> None:
        super().__init__()
        self.name = name
        self.specs = list(specs)
        self.meta = dict(meta)


class ExperimentsLoaded(Message):
    """The stored experiments were listed (``select``: the one to show)."""

    def __init__(self, names: Sequence[str], select: str | None = None) -> None:
        super().__init__()
        self.names = list(names)
        self.select = select


class ExperimentLoaded(Message):
    """One experiment's specs and meta were read."""

    def __init__(self, name: str, meta: Mapping[str, Any], specs: Sequence[AnnealSpec]) -> None:
        super().__init__()
        self.name = name
        self.meta = dict(meta)
        self.specs = list(specs)


class SweepDispatched(Message):
    """A sweep's jobs were submitted."""

    def __init__(self, experiment: str, submitted: int, summary: Any = None) -> None:
        super().__init__()
        self.experiment = experiment
        self.submitted = submitted
        self.summary = summary


@dataclass(frozen=True, slots=True)
class JobView:
    """One job as the table shows it."""

    job_id: str
    state: str
    progress: float  # 0..1
    message: str = ""
    #: where it runs, ``name (backend)``; empty when not known from this update
    executor: str = ""


class JobUpdated(Message):
    """A job's state or progress changed; a newer update replaces a queued older one."""

    def __init__(self, experiment: str, job: JobView) -> None:
        super().__init__()
        self.experiment = experiment
        self.job = job

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, JobUpdated) and message.job.job_id == self.job.job_id


class SweepFinished(Message):
    """Every job of a sweep is final and the results are in the store."""

    def __init__(self, experiment: str, summary: Any) -> None:
        super().__init__()
        self.experiment = experiment
        self.summary = summary


class JobLogRead(Message):
    """A piece of a job's log was read, from ``offset`` up to ``next_offset``."""

    def __init__(self, job_id: str, text: str, offset: int = 0, next_offset: int = 0) -> None:
        super().__init__()
        self.job_id = job_id
        self.text = text
        self.offset = offset
        self.next_offset = next_offset


class JobCancelled(Message):
    """A job was cancelled."""

    def __init__(self, job_id: str) -> None:
        super().__init__()
        self.job_id = job_id


class ExecutorsChecked(Message):
    """Executors were asked for health and queue."""

    def __init__(self, rows: Sequence[Mapping[str, Any]], queue: Sequence[Mapping[str, Any]]):
        super().__init__()
        self.rows = list(rows)
        self.queue = list(queue)
