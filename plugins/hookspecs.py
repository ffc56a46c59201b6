"""The pluggy hook specifications of annealplan (project name ``annealplan``).

Every hook uses the ``register_*(register)`` callback style: an implementation calls
``register(...)`` once per thing it provides. Arguments are append-only: an implementation
may accept any subset of them, so adding one is safe and renaming one is not.

Every hook also receives ``settings``: the plugin's own ``[plugins.<name>]`` table from
``annealplan.toml`` (an empty mapping when there is none); each plugin validates its own.
The manager calls each plugin's implementation separately, so a plugin that raises is
reported as a problem and the other plugins still register.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from plugins.contract import CostModel, ExecutorBackend, LawFamily, SourceKind

PROJECT = "annealplan"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_source_kinds(
    register: Callable[[SourceKind], None], settings: Mapping[str, Any]
) -> None:
    """Register data-source kinds.

    Called once per plugin manager collection, for every plugin; all results are kept.
    Call ``register(kind)`` once per :class:`~plugins.contract.SourceKind` instance. Two
    plugins registering the same kind name is an error naming both.

    Args:
        register: the callback that records a kind.
        settings: this plugin's ``[plugins.<name>]`` table (may be empty).
    """


@hookspec
def register_cost_models(
    register: Callable[[str, Callable[..., CostModel]], None], settings: Mapping[str, Any]
) -> None:
    """Register cost-model factories by name.

    Called once per collection, for every plugin. Call ``register(name, factory)`` where
    ``factory(**params)`` returns a :class:`~plugins.contract.CostModel` (and raises
    ``plugins.errors.ConfigError`` on bad parameters); sources refer to cost models by this
    name. Two plugins registering the same name is an error naming both.

    Args:
        register: the callback that records a factory.
        settings: this plugin's ``[plugins.<name>]`` table (may be empty).
    """


@hookspec
def register_law_families(
    register: Callable[[LawFamily], None], settings: Mapping[str, Any]
) -> None:
    """Register scaling-law families so the fitting core can be extended.

    Called once per collection, for every plugin. Call ``register(family)`` once per
    :class:`~plugins.contract.LawFamily`.

    Args:
        register: the callback that records a family.
        settings: this plugin's ``[plugins.<name>]`` table (may be empty).
    """


@hookspec
def register_executor_backends(
    register: Callable[[ExecutorBackend], None], settings: Mapping[str, Any]
) -> None:
    """Register executor backends (how jobs reach GPUs).

    Called once per collection, for every plugin. Call ``register(backend)`` once per
    :class:`~plugins.contract.ExecutorBackend` instance. Dispatch reaches every executor
    through one: an ``executors.toml`` entry names its backend and holds the settings the
    backend's ``Settings`` model validates, and ``connect`` returns the
    :class:`~plugins.contract.JobSubmitter` that runs its jobs. The built-in ``http`` and
    ``local`` backends register through this hook too.

    Args:
        register: the callback that records a backend.
        settings: this plugin's ``[plugins.<name>]`` table (may be empty).
    """
