"""The plugin registry: what the installed plugins provide, frozen after collection.

``plugins.manager.collect`` builds it by calling every plugin's hooks; the core only reads
it. Lookups of unknown names raise :class:`~plugins.errors.PluginError` with "did you mean"
suggestions.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from plugins.errors import ConfigError, PluginError, did_you_mean

if TYPE_CHECKING:
    from plugins.contract import CostModel, ExecutorBackend, LawFamily, SourceKind


@dataclass(frozen=True, slots=True)
class LoadProblem:
    """A plugin that could not be loaded or could not register (reported, never fatal).

    Attributes:
        plugin: the plugin's name (entry-point name or module).
        message: what went wrong and what to do.
        hook: the hook that raised, when the problem happened while registering.
    """

    plugin: str
    message: str
    hook: str = ""

    def __str__(self) -> str:
        where = f" in {self.hook}" if self.hook else ""
        return f"{self.plugin}{where}: {self.message}"


@dataclass(frozen=True, slots=True)
class PluginInfo:
    """One loaded plugin, for ``annealplan plugins``.

    Attributes:
        name: entry-point name, or the module name of a built-in.
        version: the distribution's version (annealplan's own for built-ins).
        hooks: names of the hooks it implements, sorted.
        builtin: True for the plugins shipped with annealplan.
        provides: what it registered, as ``category:name`` (``source_kind:files``…).
    """

    name: str
    version: str
    hooks: tuple[str, ...]
    builtin: bool = False
    provides: tuple[str, ...] = ()


def _frozen(mapping: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True, slots=True)
class Registry:
    """Everything the plugins registered.

    Attributes:
        source_kinds: kind name → :class:`~plugins.contract.SourceKind`.
        cost_models: cost-model name → factory (``factory(**params) -> CostModel``).
        law_families: family name → :class:`~plugins.contract.LawFamily`.
        executor_backends: backend name → :class:`~plugins.contract.ExecutorBackend`.
        plugins: the loaded plugins.
        problems: plugins that failed to load or register.
        owners: ``(category, name)`` → the plugin that registered it.
    """

    source_kinds: Mapping[str, SourceKind] = field(default_factory=dict)
    cost_models: Mapping[str, Callable[..., CostModel]] = field(default_factory=dict)
    law_families: Mapping[str, LawFamily] = field(default_factory=dict)
    executor_backends: Mapping[str, ExecutorBackend] = field(default_factory=dict)
    plugins: tuple[PluginInfo, ...] = ()
    problems: tuple[LoadProblem, ...] = ()
    owners: Mapping[tuple[str, str], str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Read-only views: a registry is shared by threads and must not change after collect.
        for name in ("source_kinds", "cost_models", "law_families", "executor_backends", "owners"):
            object.__setattr__(self, name, _frozen(getattr(self, name)))

    # -- lookups -------------------------------------------------------------------------

    def source_kind(self, name: str) -> SourceKind:
        """The source kind called ``name``.

        Raises:
            PluginError: no plugin provides it (with close names and the known kinds).
        """
        return self._lookup(self.source_kinds, name, "source kind")

    def cost_model_factory(self, name: str) -> Callable[..., CostModel]:
        """The cost-model factory called ``name`` (PluginError with suggestions if unknown)."""
        return self._lookup(self.cost_models, name, "cost model")

    def law_family(self, name: str) -> LawFamily:
        """The law family called ``name`` (PluginError with suggestions if unknown)."""
        return self._lookup(self.law_families, name, "law family")

    def executor_backend(self, name: str) -> ExecutorBackend:
        """The executor backend called ``name`` (PluginError with suggestions if unknown)."""
        return self._lookup(self.executor_backends, name, "executor backend")

    def plugin(self, name: str) -> PluginInfo:
        """The loaded plugin called ``name`` (PluginError with suggestions if unknown)."""
        return self._lookup({p.name: p for p in self.plugins}, name, "plugin")

    def owner(self, category: str, name: str) -> PluginInfo | None:
        """The plugin that registered ``name`` in ``category`` (``source_kind``,
        ``cost_model``, ``law_family``, ``executor_backend``), or None."""
        plugin = self.owners.get((category, name))
        return next((p for p in self.plugins if p.name == plugin), None)

    def build_cost_model(self, model: str, params: Mapping[str, Any] | None = None) -> CostModel:
        """Instantiate the cost model ``model`` with ``params``.

        Raises:
            PluginError: unknown model name (with suggestions).
            ConfigError: invalid parameters, field by field.
        """
        factory = self.cost_model_factory(model)
        try:
            return factory(**dict(params or {}))
        except (ConfigError, PluginError):
            raise
        except TypeError as e:
            raise ConfigError(f"invalid parameters for cost model {model!r}: {e}") from e

    def cost_model_for(self, spec: Any) -> CostModel | None:
        """The cost model of a stored source or cost spec (None: curation is free).

        Args:
            spec: a ``planner.domain.Source`` or ``CostSpec`` (anything with ``cost`` or with
                ``model`` and ``params``), or None.
        """
        if spec is None:
            return None
        cost = getattr(spec, "cost", spec)
        if cost is None or not hasattr(cost, "model"):
            return None
        return self.build_cost_model(cost.model, cost.params)

    @staticmethod
    def _lookup(table: Mapping[str, Any], name: str, what: str) -> Any:
        try:
            return table[name]
        except KeyError:
            known = ", ".join(sorted(table)) or "none"
            raise PluginError(
                f"unknown {what} {name!r}{did_you_mean(name, table)} (known: {known}); "
                "`annealplan plugins` lists what is installed"
            ) from None
