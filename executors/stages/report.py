"""Stage 3: evaluate the final model with lm-eval and assemble the job's result."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from pathlib import Path

from executors.paths import resolve_under
from executors.protocol import AnnealJobSpec, JobResult
from executors.stages.context import WorkerConfig
from executors.stages.records import Manifest, TrainState, total_train_seconds


def _git_sha() -> str:
    here = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"


def versions() -> dict[str, str]:
    """Versions of everything that shapes a result (and the project's git SHA)."""
    found = {}
    for dist in ("torch", "deepspeed", "transformers", "lm_eval", "annealplan", "tokenizers"):
        try:
            found[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            found[dist] = "absent"
    found["annealplan_git"] = _git_sha()
    found["python"] = sys.version.split()[0]
    return found


def evaluate_and_report(
    spec: AnnealJobSpec, cfg: WorkerConfig, manifest: Manifest, state: TrainState
) -> JobResult:
    """Evaluate the final model and assemble the job's result."""
    import torch

    from executors.evaluate import evaluate

    ev = spec.evaluation
    task_dirs = [
        resolve_under(cfg.root, d, field=f"evaluation.task_dirs.{i}", folder=True)
        for i, d in enumerate(ev.task_dirs)
    ]
    dtype = "bfloat16" if spec.training.bf16 and torch.cuda.is_available() else "float32"
    evaluation = evaluate(
        cfg.files.final,
        ev.tasks,
        task_dirs=task_dirs,
        num_fewshot=ev.num_fewshot,
        limit=ev.limit,
        batch_size=ev.batch_size,
        dtype=dtype,
        samples_path=cfg.files.samples,
    )
    return JobResult(
        job_id=spec.job_id,
        metrics=evaluation.metrics,
        continuous=evaluation.continuous,
        params=state.params,
        training_tokens=state.training_tokens,
        source_tokens=spec.source_tokens(),
        replay_tokens=spec.replay_tokens(),
        training_flops=6.0 * state.params * state.training_tokens,
        curation=manifest.curation,
        steps=state.steps,
        tokens_per_s=state.tokens_per_s,
        mfu=state.mfu,
        train_seconds=state.train_seconds,
        train_seconds_total=max(state.train_seconds, total_train_seconds(cfg.files.train_seconds)),
        eval_seconds=evaluation.seconds,
        versions=versions(),
        seeds={"training": spec.training.seed, "data": spec.training.seed, **evaluation.seeds},
        data_hash=manifest.data_hash,
        checkpoint_hash=state.checkpoint_hash,
        world_size=state.world_size,
    )
