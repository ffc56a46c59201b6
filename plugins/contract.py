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
from typing import TYPE_CHECKING, Any, ClassVar

import sympy
from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    import numpy as np

    from planner.units import Unit


class PluginConfig(BaseModel):
    """Base for a source kind's configuration: unknown keys are errors, not ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


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


class Tokenizer(abc.ABC):
    """The minimal tokenizer interface materialisation needs (a HF tokenizer fits it)."""

    @abc.abstractmethod
    def __call__(self, texts: list[str]) -> Mapping[str, Sequence[Sequence[int]]]: ...


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
        """Validate a raw mapping into :attr:`Config` (pydantic raises field by field)."""
        return self.Config.model_validate(dict(raw))

    @abc.abstractmethod
    def cost_model(self, config: PluginConfig) -> CostModel | None:
        """The curation cost model for this configuration (None: free)."""

    @abc.abstractmethod
    def cap_tokens(self, config: PluginConfig, tokenizer: Any | None = None) -> float | None:
        """The most tokens this source can supply (None: unbounded)."""

    @abc.abstractmethod
    def materialize(
        self, config: PluginConfig, tokens: int, dest: Path, seed: int, tokenizer: Any
    ) -> Materialized:
        """Write exactly ``tokens`` tokens as packed shards plus ``manifest.json`` in ``dest``.

        Deterministic for a given seed; leaves nothing half-written on failure.
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
    """

    name: str
    expr: sympy.Expr
    x: sympy.Symbol
    params: tuple[sympy.Symbol, ...]
    bounds: tuple[tuple[float, float], ...]
    start_grid: Sequence[Sequence[float]] | Callable[[Any, Any], Sequence[Sequence[float]]]
    description: str = ""
    bounded: bool = False

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params)


class ExecutorBackend(abc.ABC):
    """A way to run jobs (``http``, ``local``…). Register through
    ``register_executor_backends``; the planner's dispatcher builds clients from it."""

    name: ClassVar[str]
    description: ClassVar[str] = ""

    @abc.abstractmethod
    def connect(self, settings: Mapping[str, Any]) -> Any:
        """Return a job submitter for these settings (see planner.dispatch)."""
