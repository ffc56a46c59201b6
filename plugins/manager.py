"""The plugin manager: built-in plugins and third-party entry points, through the same hooks.

``make_plugin_manager()`` registers the built-in modules listed in :data:`BUILTINS`, then
every entry point of the ``annealplan`` group (optionally narrowed by
``ANNEALPLAN_LOAD_PLUGINS``). ``collect()`` calls the hooks and returns the frozen
:class:`plugins.registry.Registry`. A plugin that fails to import or to register becomes a
:class:`~plugins.registry.LoadProblem`, never a crash.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import pluggy

from plugins import hookspecs
from plugins.errors import PluginError
from plugins.loading import ENV_LOAD, load_entry_points, plugins_to_load
from plugins.registry import LoadProblem, PluginInfo, Registry

# Built-in plugins: registered through the same hooks as third-party packages.
BUILTINS: tuple[str, ...] = (
    "plugins.backends.http",
    "plugins.backends.local",
    "plugins.costs.linear",
    "plugins.costs.generation",
    "plugins.costs.filtering",
    "plugins.sources.files",
    "plugins.sources.hf_disk",
    "plugins.sources.synthetic",
    "plugins.sources.filtered",
    "plugins.sources.licensed",
)

# hook name → registry category (the first word of owners' keys)
_CATEGORIES = {
    "register_source_kinds": "source_kind",
    "register_cost_models": "cost_model",
    "register_law_families": "law_family",
    "register_executor_backends": "executor_backend",
}


def _annealplan_version() -> str:
    try:
        return importlib.metadata.version("annealplan")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


class PluginManager(pluggy.PluginManager):
    """A pluggy manager that also remembers each plugin's distribution and version."""

    def __init__(self) -> None:
        super().__init__(hookspecs.PROJECT)
        #: plugin name → (distribution, version, builtin)
        self.dists: dict[str, tuple[str, str, bool]] = {}


def make_plugin_manager(
    *,
    entry_points: bool = True,
    only: Iterable[str] | None = None,
    builtins: Iterable[str] = BUILTINS,
) -> tuple[PluginManager, list[LoadProblem]]:
    """Build a plugin manager with the built-ins and the installed third-party plugins.

    Args:
        entry_points: also load plugins from the ``annealplan`` entry-point group.
        only: load only these entry-point plugins (by entry-point name); None loads all,
            an empty list loads none. Defaults to ``ANNEALPLAN_LOAD_PLUGINS`` when unset.
        builtins: the built-in modules to register (tests narrow it).

    Returns:
        The manager and the problems met while loading (a plugin that failed to import or
        whose hooks do not match the specs is left out and reported here).
    """
    pm = PluginManager()
    pm.add_hookspecs(hookspecs)
    version = _annealplan_version()
    for name in builtins:
        # A broken built-in is our bug, not the user's: let it raise.
        module = importlib.import_module(name)
        pm.register(module, name=name)
        pm.dists[name] = ("annealplan", version, True)
    pm.check_pending()
    problems: list[LoadProblem] = []
    if entry_points:
        problems.extend(load_entry_points(pm, plugins_to_load(only), on_loaded=_record_dist(pm)))
    return pm, problems


def _record_dist(pm: PluginManager) -> Callable[[importlib.metadata.EntryPoint], None]:
    def record(ep: importlib.metadata.EntryPoint) -> None:
        dist = ep.dist.name if ep.dist else ep.name
        pm.dists[ep.name] = (dist, ep.dist.version if ep.dist else "unknown", False)

    return record


def collect(
    pm: pluggy.PluginManager,
    plugin_settings: Mapping[str, Mapping[str, Any]] | None = None,
    *,
    problems: Iterable[LoadProblem] = (),
) -> Registry:
    """Call every plugin's hooks and gather what they register.

    Each plugin's implementation is called on its own with its own settings table, so one
    plugin raising (reported as a problem, its registrations dropped) does not hide the
    others.

    Args:
        pm: the manager from :func:`make_plugin_manager`.
        plugin_settings: ``[plugins.<name>]`` tables keyed by plugin name.
        problems: problems already met while loading, carried into the registry.

    Returns:
        The frozen registry.

    Raises:
        PluginError: two plugins register the same name in one category (both named).
    """
    plugin_settings = plugin_settings or {}
    all_problems = list(problems)
    tables: dict[str, dict[str, Any]] = {c: {} for c in _CATEGORIES.values()}
    owners: dict[tuple[str, str], str] = {}
    provides: dict[str, list[str]] = {}

    for hook_name, category in _CATEGORIES.items():
        caller = getattr(pm.hook, hook_name)
        # get_hookimpls() lists impls in registration order: built-ins first, so a
        # duplicate is blamed on the later (third-party) plugin.
        for impl in caller.get_hookimpls():
            plugin = impl.plugin_name
            settings = dict(plugin_settings.get(plugin, {}))
            staged: list[tuple[str, Any]] = []
            register = _stager(category, staged)
            kwargs = {"register": register, "settings": settings}
            try:
                impl.function(**{a: kwargs[a] for a in impl.argnames})
            except Exception as e:  # a third party raising is reported, not fatal
                all_problems.append(LoadProblem(plugin, f"{type(e).__name__}: {e}", hook=hook_name))
                continue
            for key, value in staged:
                if (category, key) in owners:
                    other = owners[(category, key)]
                    raise PluginError(
                        f"{category.replace('_', ' ')} {key!r} is registered by both "
                        f"{other!r} and {plugin!r}; uninstall one or narrow loading with "
                        f"{ENV_LOAD}"
                    )
                owners[(category, key)] = plugin
                tables[category][key] = value
                provides.setdefault(plugin, []).append(f"{category}:{key}")

    infos = []
    for name, plugin in pm.list_name_plugin():
        if plugin is None:
            continue
        dists = getattr(pm, "dists", {})
        _dist, version, builtin = dists.get(name, (name, "unknown", False))
        hooks = tuple(sorted(h.name for h in pm.get_hookcallers(plugin) or ()))
        infos.append(PluginInfo(name, version, hooks, builtin, tuple(provides.get(name, ()))))
    return Registry(
        source_kinds=tables["source_kind"],
        cost_models=tables["cost_model"],
        law_families=tables["law_family"],
        executor_backends=tables["executor_backend"],
        plugins=tuple(infos),
        problems=tuple(all_problems),
        owners=owners,
    )


def _stager(category: str, staged: list[tuple[str, Any]]) -> Callable[..., None]:
    """The ``register`` callback for one hook call: validates and stages registrations."""

    def register(*args: Any) -> None:
        if category == "cost_model":
            if len(args) != 2 or not isinstance(args[0], str) or not callable(args[1]):
                raise PluginError("register_cost_models: call register(name, factory)")
            staged.append((args[0], args[1]))
            return
        if len(args) != 1:
            raise PluginError(f"register for {category}: call register(obj) with one object")
        obj = args[0]
        name = getattr(obj, "name", None)
        if not isinstance(name, str) or not name:
            raise PluginError(f"a registered {category.replace('_', ' ')} has no name")
        if category == "source_kind":
            from plugins.contract import SourceKind

            if not isinstance(obj, SourceKind):
                raise PluginError(f"source kind {name!r} is not a plugins.contract.SourceKind")
        staged.append((name, obj))

    return register


def load_registry(
    *, plugin_settings: Mapping[str, Mapping[str, Any]] | None = None, **kwargs: Any
) -> Registry:
    """Shortcut: :func:`make_plugin_manager` then :func:`collect` (for executors and scripts)."""
    pm, problems = make_plugin_manager(**kwargs)
    return collect(pm, plugin_settings, problems=problems)
