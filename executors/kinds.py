"""The source kinds an executor can materialise: built-ins, entry points, extra modules.

An executor needs one thing from the plugins: their data-source kinds, through the
``register_source_kinds`` hook of :mod:`plugins.hookspecs`. It calls no other hook, so it
never runs a plugin's planner-side code (cost models, law families, executor backends), and
it does not use :mod:`plugins.manager`, whose built-ins include the planner's executor
backends. Plugins are found as the planner finds them: the built-in kinds, then the
``annealplan`` entry-point group (narrowed by ``ANNEALPLAN_LOAD_PLUGINS``), then the
modules or ``.py`` files the daemon was told to load (``--plugin``).

A third-party plugin that cannot be imported, whose hooks do not match the specs, or whose
hook raises is left out and reported as a :class:`~plugins.registry.LoadProblem`; a broken
built-in or ``--plugin`` module raises (that is the operator's or our own mistake).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType, ModuleType
from typing import TYPE_CHECKING, Any

import pluggy

from plugins import hookspecs
from plugins.errors import PluginError
from plugins.loading import ENV_LOAD, load_entry_points, plugins_to_load
from plugins.registry import LoadProblem

if TYPE_CHECKING:
    from plugins.contract import SourceKind

#: the built-in modules that register source kinds
BUILTIN_KIND_MODULES: tuple[str, ...] = (
    "plugins.sources.files",
    "plugins.sources.hf_disk",
    "plugins.sources.synthetic",
    "plugins.sources.filtered",
    "plugins.sources.licensed",
)
_HOOK = "register_source_kinds"


@dataclass(frozen=True, slots=True)
class SourceKinds:
    """What the installed plugins provide to an executor.

    Attributes:
        kinds: kind name → :class:`~plugins.contract.SourceKind`.
        owners: kind name → the plugin that registered it.
        problems: plugins left out (failed to import, to match the hooks, or to register).
    """

    kinds: Mapping[str, SourceKind] = field(default_factory=dict)
    owners: Mapping[str, str] = field(default_factory=dict)
    problems: tuple[LoadProblem, ...] = ()


def load_source_kinds(extra: Iterable[str] = (), *, entry_points: bool = True) -> SourceKinds:
    """Collect the source kinds of the built-ins, the entry points and ``extra`` modules.

    Args:
        extra: dotted module names or ``.py`` files to load as plugins too.
        entry_points: also load the ``annealplan`` entry-point group.

    Returns:
        The kinds, who registered each, and the plugins that were left out.

    Raises:
        PluginError: two plugins register the same kind (both named).
        ImportError: an ``extra`` module cannot be loaded.
    """
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    for name in BUILTIN_KIND_MODULES:
        pm.register(importlib.import_module(name), name=name)
    pm.check_pending()
    problems = load_entry_points(pm, plugins_to_load()) if entry_points else []
    for i, name in enumerate(extra):
        pm.register(_import_plugin(name, i), name=f"executor-extra-{i}:{name}")
    pm.check_pending()
    kinds: dict[str, SourceKind] = {}
    owners: dict[str, str] = {}
    # Registration order: built-ins first, so a duplicate is blamed on the later plugin.
    for impl in getattr(pm.hook, _HOOK).get_hookimpls():
        staged: list[SourceKind] = []
        args = {"register": _stager(staged), "settings": {}}
        try:
            impl.function(**{a: args[a] for a in impl.argnames})
        except Exception as e:  # a third party raising is reported, not fatal
            problems.append(LoadProblem(impl.plugin_name, f"{type(e).__name__}: {e}", hook=_HOOK))
            continue
        for kind in staged:
            if kind.name in owners:
                raise PluginError(
                    f"source kind {kind.name!r} is registered by both {owners[kind.name]!r} "
                    f"and {impl.plugin_name!r}; uninstall one or narrow loading with {ENV_LOAD}"
                )
            owners[kind.name] = impl.plugin_name
            kinds[kind.name] = kind
    return SourceKinds(MappingProxyType(kinds), MappingProxyType(owners), tuple(problems))


def _stager(staged: list[SourceKind]) -> Any:
    """The ``register`` callback of one hook call: checks what it is given, stages it."""
    from plugins.contract import SourceKind

    def register(*args: Any) -> None:
        if len(args) != 1:
            raise PluginError("register for source_kind: call register(obj) with one object")
        kind = args[0]
        name = getattr(kind, "name", None)
        if not isinstance(name, str) or not name:
            raise PluginError("a registered source kind has no name")
        if not isinstance(kind, SourceKind):
            raise PluginError(f"source kind {name!r} is not a plugins.contract.SourceKind")
        staged.append(kind)

    return register


def _import_plugin(name: str, index: int) -> ModuleType:
    if name.endswith(".py"):
        spec = importlib.util.spec_from_file_location(f"_annealplan_extra_{index}", name)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot load plugin file {name}")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    return importlib.import_module(name)
