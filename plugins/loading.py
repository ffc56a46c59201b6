"""Finding third-party plugins: the ``annealplan`` entry-point group, for any plugin manager.

The planner's manager (:mod:`plugins.manager`) and the executor's source-kind loader
(:mod:`executors.kinds`) find third-party plugins the same way, through this module: every
entry point of the group, narrowed by ``ANNEALPLAN_LOAD_PLUGINS``. A plugin that fails to
import or whose hooks do not match the specs is left out and reported as a
:class:`~plugins.registry.LoadProblem`, never a crash.
"""

from __future__ import annotations

import importlib.metadata
import os
from collections.abc import Callable, Iterable

import pluggy

from plugins.registry import LoadProblem

ENTRY_POINT_GROUP = "annealplan"
ENV_LOAD = "ANNEALPLAN_LOAD_PLUGINS"


def plugins_to_load(only: Iterable[str] | None = None) -> set[str] | None:
    """The entry-point names to load: ``only`` when given, else ``ANNEALPLAN_LOAD_PLUGINS``
    (comma-separated) when set, else None (all of them)."""
    if only is None and (env := os.environ.get(ENV_LOAD)) is not None:
        only = [p.strip() for p in env.split(",") if p.strip()]
    return None if only is None else set(only)


def load_entry_points(
    pm: pluggy.PluginManager,
    only: set[str] | None,
    *,
    on_loaded: Callable[[importlib.metadata.EntryPoint], None] | None = None,
) -> list[LoadProblem]:
    """Register every ``annealplan`` entry point (or those named in ``only``) with ``pm``.

    Args:
        pm: the plugin manager, its hookspecs already added.
        only: the entry-point names to load; None loads all.
        on_loaded: called with each entry point that registered cleanly.

    Returns:
        The problems met: a plugin that cannot be imported, whose hooks do not match the
        specs (checked for this plugin alone, so a misspelt hook is pinned on the right
        package), or a name in ``only`` that no installed package provides.
    """
    problems: list[LoadProblem] = []
    found: set[str] = set()
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if only is not None and ep.name not in only:
            continue
        found.add(ep.name)
        if pm.get_plugin(ep.name) is not None or pm.is_blocked(ep.name):
            continue
        try:
            plugin = ep.load()
        except Exception as e:  # any import-time failure of a third party is a problem
            problems.append(
                LoadProblem(ep.name, f"cannot import {ep.value!r}: {type(e).__name__}: {e}")
            )
            continue
        try:
            pm.register(plugin, name=ep.name)
            pm.check_pending()
        except Exception as e:
            if pm.is_registered(plugin):
                pm.unregister(plugin)
            problems.append(
                LoadProblem(
                    ep.name, f"does not match the annealplan hooks: {e}; check its hook names"
                )
            )
            continue
        if on_loaded is not None:
            on_loaded(ep)
    for missing in sorted((only or set()) - found):
        problems.append(
            LoadProblem(
                missing, f"{ENV_LOAD} names {missing!r} but no installed package provides it"
            )
        )
    return problems
