"""Running a designed sweep, as ``annealplan sweep run`` and the TUI's Jobs screen both do.

An experiment's stored meta says what its jobs need (the keys are listed in
:mod:`planner.dispatch`); the command's flags and the TUI's run form change single fields of
it. :func:`merge_overrides` is the one rule for both: a field that is given wins, one that
is not keeps the experiment's value, and the nested tables (``training``, ``evaluation``)
merge key by key with the experiment's own, so a flag changes one field, not the table.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class SweepOverrides:
    """What a person gives on top of an experiment's meta; None or empty: not given.

    Attributes:
        base_model: the checkpoint folder, relative to the executor's root.
        replay: a registered source's name, used as replay data.
        tokenizer: the tokenizer folder (default: the base model's).
        tasks: lm-eval tasks (replace the experiment's list when given).
        task_dirs: folders of task YAMLs, relative to the executor's root.
        limit: lm-eval documents per task.
        training: ``TrainingSpec`` fields, e.g. ``{"seq_len": 512}``.
        study: the study the runs land in.
        compute_unit: the runs' compute unit (``flops``, ``gpu_hours``, ``usd``, ``tokens``).
    """

    base_model: str | None = None
    replay: str | None = None
    tokenizer: str | None = None
    tasks: tuple[str, ...] = ()
    task_dirs: tuple[str, ...] = ()
    limit: int | None = None
    training: Mapping[str, Any] = field(default_factory=dict)
    study: str | None = None
    compute_unit: str | None = None


def merge_overrides(meta: Mapping[str, Any], given: SweepOverrides) -> dict[str, Any]:
    """The meta keys that ``given`` sets, ready for ``run_sweep(overrides=...)``.

    Args:
        meta: the experiment's stored meta (its nested tables are merged into, not lost).
        given: the flags or the form's values.

    Returns:
        Only the keys ``given`` sets; ``training`` and ``evaluation`` hold the experiment's
        table updated with the given fields.
    """
    out: dict[str, Any] = {}
    for key in ("base_model", "replay", "tokenizer", "study", "compute_unit"):
        value = getattr(given, key)
        if value:
            out[key] = value
    evaluation: dict[str, Any] = {}
    if given.tasks:
        evaluation["tasks"] = list(given.tasks)
    if given.task_dirs:
        evaluation["task_dirs"] = list(given.task_dirs)
    if given.limit is not None:
        evaluation["limit"] = given.limit
    for key, table in (("evaluation", evaluation), ("training", dict(given.training))):
        if table:
            out[key] = {**dict(meta.get(key) or {}), **table}
    return out
