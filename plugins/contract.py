"""The extension contract: the types a plugin author implements.

A plugin package implements some of the hooks in :mod:`plugins.hookspecs` and registers
instances of the classes below. The planner's core imports only this module and the
hookspecs, never a built-in plugin.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar, runtime_checkable

import sympy
from pydantic import BaseModel, ConfigDict, ValidationError

from plugins.errors import ConfigError

if TYPE_CHECKING:
    import numpy as np

    from executors.protocol import AnnealJobSpec, Health, JobRecord, JobResult, JobState, LogChunk
    from plugins.units import Unit


class PluginConfig(BaseModel):
    """Base for a source kind's configuration: unknown keys are errors, not ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: fields that hold file paths or globs: ``sources add`` stores them absolute, so a
    #: source materialises the same from any working directory
    path_fields: ClassVar[tuple[str, ...]] = ()


_M = TypeVar("_M", bound=BaseModel)


def validate_model(model: type[_M], raw: Mapping[str, Any], *, what: str) -> _M:
    """Validate ``raw`` into ``model``, turning pydantic's errors into one clear message.

    Args:
        model: the pydantic model (a :class:`PluginConfig` or a cost model's parameters).
        raw: the user's mapping.
        what: what is being validated, for the message ("configuration of source kind 'files'").

    Raises:
        ConfigError: listing every invalid field as ``field: problem`` and the known fields.
    """
    try:
        return model.model_validate(dict(raw))
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(config)'}: {err['msg']}"
            for err in e.errors()
        )
        known = ", ".join(model.model_fields)
        raise ConfigError(f"invalid {what}: {problems} (known fields: {known})") from e


class CostModel(abc.ABC):
    """What it costs to acquire ``n`` tokens of a source (curation only, not training).

    ``cost`` and ``expr`` must agree: the allocation solver differentiates ``expr``.
    Optional abilities are class flags, never ``hasattr`` probes.
    """

    SUPPORTS_DISCOUNTS: ClassVar[bool] = False

    #: the unit ``cost`` returns (one of planner.units.Unit's cost units)
    unit: Unit

    @abc.abstractmethod
    def expr(self, n: sympy.Symbol) -> sympy.Expr:
        """The cost of ``n`` tokens as a sympy expression in ``n``, in :attr:`unit`."""

    def cost(self, tokens: float | np.ndarray) -> float | np.ndarray:
        """The cost of ``tokens`` tokens, in :attr:`unit` (vectorised)."""
        n = sympy.Symbol("n", nonnegative=True)
        return self._fn(n)(tokens)

    def _fn(self, n: sympy.Symbol) -> Callable[[Any], Any]:
        cached = getattr(self, "_lambdified", None)
        if cached is None:
            cached = sympy.lambdify(n, self.expr(n), "numpy")
            object.__setattr__(self, "_lambdified", cached)
        return cached

    def describe(self) -> str:
        """A one-line formula for people, e.g. ``2.0e-06 usd/token · n + 500 usd``."""
        n = sympy.Symbol("n")
        return f"{sympy.sstr(self.expr(n))} [{self.unit.value}]"


@dataclass(frozen=True, slots=True)
class CurationCost:
    """What curation actually spent while materialising (measured, not modelled)."""

    cost: float = 0.0
    unit: str = "usd"
    generator_tokens: int = 0
    documents_scored: int = 0
    seconds: float = 0.0
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Materialized:
    """What ``SourceKind.materialize`` wrote.

    Attributes:
        dest: the folder holding the shards and ``manifest.json``.
        tokens: exactly the number of tokens requested.
        shards: shard file names (numpy ``.npy`` arrays of token ids), in order.
        content_hash: sha256 over the shards' token ids, in order.
        documents_used: how many source documents contributed.
        curation: what curation spent.
    """

    dest: Path
    tokens: int
    shards: tuple[str, ...]
    content_hash: str
    documents_used: int
    curation: CurationCost


@runtime_checkable
class Tokenizer(Protocol):
    """The tokenizer interface materialisation needs; a Hugging Face
    ``PreTrainedTokenizerFast`` fits it as is.

    Called as ``tokenizer(texts, add_special_tokens=False)["input_ids"]``; documents are
    joined with ``eos_token_id`` between them.
    """

    eos_token_id: int | None

    def __call__(self, texts: list[str], **kwargs: Any) -> Mapping[str, Any]: ...

    def __len__(self) -> int: ...


@dataclass(frozen=True, slots=True)
class CostChoice:
    """A cost model chosen by name, with its parameters (JSON-able).

    The registry turns it into a :class:`CostModel` through the factory registered under
    ``model``; the store keeps it as a ``planner.domain.CostSpec``.
    """

    model: str
    params: Mapping[str, Any] = field(default_factory=dict)


class SourceKind(abc.ABC):
    """A kind of data source (``files``, ``synthetic``…): how to configure, price and
    materialise it. Register instances through ``register_source_kinds``."""

    #: unique kind name, e.g. "files"
    name: ClassVar[str]
    #: one line for people
    description: ClassVar[str] = ""
    #: the pydantic model that validates this kind's configuration
    Config: ClassVar[type[PluginConfig]]

    def parse_config(self, raw: Mapping[str, Any]) -> PluginConfig:
        """Validate a raw mapping into :attr:`Config`.

        Raises:
            ConfigError: one ``field: problem`` per invalid field, and the known fields.
        """
        return validate_model(self.Config, raw, what=f"configuration of source kind {self.name!r}")

    def default_cost(self, config: PluginConfig) -> CostChoice | None:
        """The curation cost model this configuration implies (None: curation is free).

        Users may override it with another registered cost model.
        """
        return None

    @abc.abstractmethod
    def cap_tokens(self, config: PluginConfig, tokenizer: Tokenizer | None = None) -> float | None:
        """The most tokens this source can supply (None: unbounded).

        With a tokenizer the count is exact; without one a kind may estimate it (e.g. from
        characters), and says so in its description.
        """

    @abc.abstractmethod
    def materialize(
        self, config: PluginConfig, tokens: int, dest: Path, seed: int, tokenizer: Tokenizer
    ) -> Materialized:
        """Write exactly ``tokens`` tokens as packed shards plus ``manifest.json`` in ``dest``.

        Documents are tokenised without special tokens and joined with the tokenizer's
        EOS between them. Deterministic for a given seed (same shards, same hash); the
        folder appears only when complete (written in a temporary sibling, then renamed),
        so nothing half-written is left behind on failure.

        Raises:
            PluginError: the files are missing, or the source holds fewer than ``tokens``
                tokens (the message states the cap).
        """


@dataclass(frozen=True)
class LawFamily:
    """A scaling-law family written once as a sympy expression.

    Attributes:
        name: unique family name (``power``, ``loglinear``, ``logistic``…).
        expr: the law in the scaled compute ``x`` and the parameter symbols.
        x: the compute symbol (compute divided by the fit's ``x_ref``).
        params: parameter symbols, in the order parameter vectors use.
        bounds: (low, high) per parameter, in scaled units.
        start_grid: candidate starting vectors for multi-start fitting, or a callable
            ``(x, y) -> list of vectors`` that derives them from the data.
        description: one line for people.
        bounded: True when the family only makes sense for metrics in [0, 1] (accuracies).
        positive: True when the family's values are positive by construction (an
            exponential): a fit on data with a value <= 0 fails with a message.
        signed_param: a parameter whose sign follows the metric's direction (the power
            law's scale A: >= 0 when lower is better, <= 0 when higher is better).
        variables: the input symbols when the law has more than one (e.g. params N and
            tokens D); empty for laws of ``x`` alone.
    """

    name: str
    expr: sympy.Expr
    x: sympy.Symbol
    params: tuple[sympy.Symbol, ...]
    bounds: tuple[tuple[float, float], ...]
    start_grid: Sequence[Sequence[float]] | Callable[[Any, Any], Sequence[Sequence[float]]]
    description: str = ""
    bounded: bool = False
    positive: bool = False
    signed_param: str | None = None
    variables: tuple[sympy.Symbol, ...] = ()

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params)


class BackendSettings(BaseModel):
    """Base for an executor backend's settings (one ``[executors.<name>]`` table of
    ``executors.toml``, less its ``backend`` key): unknown keys are errors, not ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@runtime_checkable
class JobSubmitter(Protocol):
    """One executor, as dispatch, the job commands and the TUI use it.

    An :class:`ExecutorBackend` returns one from ``connect``. Jobs carry a client-chosen
    id: submitting the same spec under the same id again is the same job, so a retried
    submit never runs twice. Every call raises
    :class:`~plugins.errors.ExecutorReplyError` when the executor refuses or cannot be
    reached: ``status`` 404 means it does not know the job, ``unreachable`` that a later
    try may succeed (dispatch then keeps the job where it is).

    The job types are the executor protocol's pydantic models (``executors.protocol``),
    named here for type checkers only: they are the one definition of a job on the wire,
    and the contract stays importable without them.
    """

    #: the executor's name (``executors.toml``), shown beside its jobs
    name: str
    #: where it is, for people (a URL, a cluster)
    url: str

    async def health(self) -> Health:
        """The executor's health; raises when it speaks another protocol version."""
        ...

    async def submit(self, spec: AnnealJobSpec) -> JobRecord:
        """Queue a job under ``spec.job_id`` (idempotent)."""
        ...

    async def job(self, job_id: str) -> JobRecord:
        """One job's state and progress."""
        ...

    async def jobs(self, state: JobState | None = None) -> list[JobRecord]:
        """Every job the executor knows (only those in ``state`` when given)."""
        ...

    async def result(self, job_id: str) -> JobResult:
        """A succeeded job's metrics, costs, versions and hashes."""
        ...

    async def log(self, job_id: str, offset: int = 0, limit: int = 65536) -> LogChunk:
        """A job's log from byte ``offset`` on (at most ``limit`` bytes)."""
        ...

    async def cancel(self, job_id: str) -> JobRecord:
        """Cancel a job (idempotent); returns its record."""
        ...

    async def aclose(self) -> None:
        """Release what ``connect`` opened (connections, a daemon it started)."""
        ...


class ExecutorBackend(abc.ABC):
    """A way to run jobs (``http``, ``local``…). Register through
    ``register_executor_backends``; dispatch reaches every executor through one.

    An ``executors.toml`` entry names its backend (``backend = "http"`` when absent) and
    holds that backend's settings, validated by :attr:`Settings`.
    """

    name: ClassVar[str]
    description: ClassVar[str] = ""
    #: the pydantic model of this backend's settings
    Settings: ClassVar[type[BackendSettings]] = BackendSettings

    def parse_settings(self, raw: Mapping[str, Any]) -> BackendSettings:
        """Validate an entry's settings into :attr:`Settings`.

        Raises:
            ConfigError: one ``setting: problem`` per invalid or unknown setting.
        """
        return validate_model(
            self.Settings, raw, what=f"settings of executor backend {self.name!r}"
        )

    def check(self, settings: BackendSettings) -> None:
        """Checks worth making when an executor is added (a URL's scheme, a token file
        that exists…); loading a saved entry does not repeat them. Default: none.

        Raises:
            ConfigError: what is wrong and what to do.
        """
        return None

    def where(self, settings: BackendSettings) -> str:
        """Where an executor of these settings is, for people (a URL, a cluster)."""
        return self.name

    def describe(self, settings: BackendSettings) -> str:
        """One line for ``annealplan executors list``: the backend, where, the settings."""
        given = settings.model_dump(mode="json", exclude_unset=True, exclude_none=True)
        rest = " ".join(f"{k}={v}" for k, v in given.items())
        return f"{self.name}: {self.where(settings)} {rest}".rstrip()

    @abc.abstractmethod
    def connect(
        self,
        settings: BackendSettings,
        *,
        name: str,
        project_dir: Path,
        retries: int | None = None,
    ) -> JobSubmitter:
        """Open a job submitter for one executor; the caller awaits its ``aclose()``.

        Args:
            settings: validated by :meth:`parse_settings`.
            name: the executor's name (its ``executors.toml`` key).
            project_dir: the project folder (relative paths, local state).
            retries: how often a failed call is retried (None: the backend's default;
                health checks pass 1 to fail fast).

        Raises:
            ConfigError: the settings cannot be used (an unreadable token file…).
            ExecutorError: the executor cannot be started or reached.
        """
