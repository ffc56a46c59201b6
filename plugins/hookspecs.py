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
    :class:`~plugins.contract.JobSubmitter` that runs its jobs. The built-in backends
    register through this hook too: ``http`` (a daemon), ``local`` (the embedded daemon),
    ``slurm`` (a batch job per anneal) and ``ray`` (a Ray job per anneal).

    Adding a backend (SkyPilot, Kubernetes…) in a package of your own:

    1. subclass :class:`~plugins.contract.ExecutorBackend`: a unique ``name``, a
       ``Settings`` model (a :class:`~plugins.contract.BackendSettings`; ``annealplan
       executors add NAME --backend yours --some-setting V`` fills ``some_setting``),
       ``check`` for what adding an executor should verify (raise
       :class:`~plugins.errors.ConfigError` naming the setting and what to do), and
       ``connect``;
    2. return from ``connect`` an object with the :class:`~plugins.contract.JobSubmitter`
       attributes and coroutines: ``submit`` under the spec's own ``job_id`` (submitting
       it again is the same job; another spec under that id is a 409), ``job``/``jobs``,
       ``log``, ``result``, ``cancel``, ``health``, ``aclose``; raise
       :class:`~plugins.errors.ExecutorReplyError` with status 404 for an unknown job and
       503 (or 0) while the scheduler cannot be reached;
    3. run each job as ``python -m executors.batch --state S --root R --job-id ID``: it runs
       the daemon's stages for one job and records the job's state and result in its
       folder and its output (:class:`executors.batch.BatchFolder`), so your backend only
       maps submit, status, logs and cancel to your scheduler's own commands
       (``sky jobs launch/queue/logs/cancel``; a Kubernetes ``Job``, ``kubectl logs``);
       :mod:`plugins.backends.scheduled` has the daemon's replies;
    4. declare the module in your package's ``[project.entry-points."annealplan"]``.

    ``examples/plugin-example`` is such a package (its ``background`` backend runs each job
    as a local process).

    Args:
        register: the callback that records a backend.
        settings: this plugin's ``[plugins.<name>]`` table (may be empty).
    """
