"""The stages of one attempt in order: materialise → train → evaluate.

:func:`run_stages` knows nothing of the daemon: whoever runs it (the daemon's worker, a
batch job's script) says through ``enter`` whether the job may move on to the next stage,
and receives training progress through ``on_progress``.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from executors.kinds import load_source_kinds
from executors.paths import check_spec_paths, resolve_under
from executors.protocol import AnnealJobSpec, JobResult, JobState
from executors.stages.context import Fenced, JobFailed, WorkerConfig
from executors.stages.materialize import materialize
from executors.stages.report import evaluate_and_report
from executors.stages.train import OnProgress, train

#: asked before training and before evaluating; False: a newer attempt owns the job
MayEnter = Callable[[JobState], bool]


def run_stages(
    spec: AnnealJobSpec, cfg: WorkerConfig, *, enter: MayEnter, on_progress: OnProgress
) -> JobResult:
    """Run (or resume) every stage of the job and return its result.

    Args:
        spec: the job.
        cfg: the attempt's configuration.
        enter: called with ``TRAINING`` and then ``EVALUATING``; False stops the attempt.
        on_progress: called with the trainer's progress, step by step.

    Returns:
        The job's result.

    Raises:
        PathRefused: a path of the job leaves the root (checked again before use).
        JobFailed: a failure that retrying cannot fix.
        Fenced: ``enter`` said no, or the trainer found a newer attempt.
    """
    check_spec_paths(spec, cfg.root, deny=(cfg.state_dir,), plugins=cfg.plugins)
    # Relative paths in sources' configs resolve under the root.
    os.chdir(cfg.root)
    from transformers import AutoTokenizer

    field = "tokenizer" if spec.tokenizer else "base_model"
    tok_dir = resolve_under(cfg.root, spec.tokenizer or spec.base_model, field=field, folder=True)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(tok_dir))
    except (OSError, ValueError, TypeError, KeyError) as e:
        # a folder without a readable tokenizer stays so: fail once, never retry
        raise JobFailed(
            "tokenizer_unreadable",
            f"{field}: no tokenizer loads from {spec.tokenizer or spec.base_model!r} "
            f"({type(e).__name__}: {e}); give a Hugging Face model or tokenizer folder",
        ) from None
    found = load_source_kinds(cfg.plugins)
    for problem in found.problems:
        print(f"warning: plugin left out: {problem}", flush=True)
    manifest = materialize(spec, cfg, tokenizer, found.kinds)
    _enter(enter, JobState.TRAINING)
    state = train(spec, cfg, manifest, on_progress)
    _enter(enter, JobState.EVALUATING)
    return evaluate_and_report(spec, cfg, manifest, state)


def _enter(enter: MayEnter, stage: JobState) -> None:
    if not enter(stage):
        raise Fenced(f"the job may not enter {stage.value}: a newer attempt owns it")
