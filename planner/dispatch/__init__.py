"""Dispatch: send a designed sweep to executors and ingest each result once.

Dispatch reaches executors only through the plugin registry's executor backends
(``register_executor_backends``) and the :class:`plugins.contract.JobSubmitter` each one
returns; the built-in ``http`` and ``local`` backends live in :mod:`plugins.backends`, with
the HTTP transport and the local daemon's launcher.

- :mod:`planner.dispatch.scheduler`: ``run_sweep`` spreads an experiment over executors,
  polls, and ingests each finished job into the store exactly once (run id = job id).
- :mod:`planner.dispatch.ingest`: how an experiment's meta and an ``AnnealSpec`` become an
  executor job, and how a job's result becomes a ``Run`` with ``Metric`` rows.
- :mod:`planner.dispatch.registry`: the executors a project knows (``executors.toml``:
  each entry's backend and settings), and ``open_clients``, which connects them (or the
  ``local`` backend when none is registered).
- :mod:`planner.dispatch.confirm`: ``confirm_plan`` runs a stored plan's confirmation
  anneal (several sources in one job, the sweep's settings) the same way and stores the
  measured gain in the plan.
- :mod:`planner.dispatch.session`: how ``sweep run``'s flags and the TUI's run form
  override an experiment's meta (one merge for both faces).

Experiment meta keys read when turning ``AnnealSpec`` into jobs (``annealplan sweep run``
flags override them):

==================  =================================================================
``base_model``      required: HF checkpoint folder, relative to the executor's root
``tokenizer``       optional: tokenizer folder (default: ``base_model``)
``replay``          required: ``{"kind": ..., "config": {...}}`` (or a registered source
                    name as a string); a control spec (source None) trains on it only
``training``        optional: ``executors.protocol.TrainingSpec`` fields (seed is the
                    spec's own)
``evaluation``      optional: ``EvaluationSpec`` fields (tasks, task_dirs, limit…)
``study``           optional: the study runs land in (default: the experiment name)
``compute_unit``    optional: ``flops`` (default), ``gpu_hours``, ``usd`` or ``tokens``
                    (``unit`` is read too); a run's compute = training + measured curation
``rates``           optional: ``{"flops_per_gpu_hour", "usd_per_gpu_hour"}``
==================  =================================================================

A spec's source name is looked up in the store (``store.source(name)``) for its kind and
config; ``spec.tokens`` are the source's tokens (total tokens for a control), and
``spec.replay_fraction`` sets the replay share.
"""
