"""Evaluate a model folder on the demo's lm-eval tasks, offline.

The task YAMLs live in ``examples/domain/tasks`` (:data:`TASKS_DIR`, the ``include_path``
for lm-eval's TaskManager). Besides lm-eval's accuracies this computes one continuous
metric per multiple-choice task from the logged samples: ``p_gold``, the mean softmax
probability of the right choice among the choices, which moves before accuracy does.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

TASKS_DIR = Path(__file__).resolve().parent / "tasks"
DOMAIN_MC = "demo_domain_mc"
DOMAIN_GEN = "demo_domain_gen"
DOMAIN_DOSE = "demo_domain_dose"
GENERAL_MC = "demo_general_mc"
TASKS = (DOMAIN_MC, DOMAIN_DOSE, DOMAIN_GEN, GENERAL_MC)


def task_manager(metadata: dict[str, Any] | None = None):
    """A TaskManager that indexes only the demo's tasks (fast: no built-in folders)."""
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=str(TASKS_DIR), include_defaults=False, metadata=metadata)


def p_gold(samples: list[dict]) -> float:
    """Mean probability of the gold choice, softmax over the choices' log-likelihoods."""
    values = []
    for s in samples:
        lls = [float(r[0]) for r in s["filtered_resps"]]
        top = max(lls)
        z = sum(math.exp(x - top) for x in lls)
        values.append(math.exp(lls[int(s["target"])] - top) / z)
    return sum(values) / len(values) if values else float("nan")


def evaluate(
    model_dir: Path,
    tasks: tuple[str, ...] = TASKS,
    *,
    batch_size: int = 96,
    limit: int | None = None,
    tm=None,
) -> dict[str, float]:
    """Run lm-eval on a saved HF model folder and flatten the results.

    Args:
        model_dir: a ``save_pretrained`` folder (model and tokenizer).
        tasks: task names from :data:`TASKS`.
        batch_size: lm-eval batch size.
        limit: evaluate only the first ``limit`` docs of each task (tests).
        tm: a TaskManager to reuse (built when None).

    Returns:
        ``{"<task>/<metric>": value}``: ``acc``, ``acc_norm`` and ``p_gold`` for the
        multiple-choice tasks, ``exact_match`` for the generative one.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    import lm_eval

    out = lm_eval.simple_evaluate(
        model="hf",
        model_args=f"pretrained={model_dir},dtype=float32",
        tasks=list(tasks),
        task_manager=tm or task_manager(),
        device="cpu",
        batch_size=batch_size,
        log_samples=True,
        limit=limit,
        use_cache=None,
    )
    flat: dict[str, float] = {}
    for task, metrics in out["results"].items():
        for key, value in metrics.items():
            if not isinstance(value, int | float) or "stderr" in key:
                continue
            name = key.split(",")[0]
            flat[f"{task}/{name}"] = float(value)
    for task, samples in out["samples"].items():
        if samples and "filtered_resps" in samples[0] and task != DOMAIN_GEN:
            flat[f"{task}/p_gold"] = p_gold(samples)
    return flat
