"""lm-eval on a trained model, with continuous metrics from the logged samples.

lm-eval's accuracies are step functions of the model: at small budgets they barely move,
which makes scaling-law fits noisy. The per-document log-likelihoods that
``log_samples=True`` returns give smooth metrics beside them: for multiple-choice tasks the
mean log-probability of the correct choice (also per byte of the choice, and as a
probability normalised over the choices).

The request cache is off: its key once ignored which model was evaluated (lm-eval issue
#4063), and two checkpoints must never share answers.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: lm-eval's default seeds (we pass them explicitly so results record them)
LM_EVAL_SEEDS = {"lm_eval_random": 0, "lm_eval_numpy": 1234, "lm_eval_torch": 1234}


@dataclass(frozen=True, slots=True)
class Evaluation:
    """What one evaluation measured."""

    metrics: dict[str, float]
    continuous: dict[str, float]
    seconds: float
    seeds: dict[str, int]


def flatten_results(results: Mapping[str, Mapping[str, Any]]) -> dict[str, float]:
    """``{"task": {"acc,none": 0.5}}`` → ``{"task/acc": 0.5}`` (finite numbers only)."""
    flat: dict[str, float] = {}
    for task, values in results.items():
        for key, value in values.items():
            if (
                key in ("alias", "sample_len")
                or not isinstance(value, int | float)
                or isinstance(value, bool)
            ):
                continue
            metric, _, filt = key.partition(",")
            name = f"{task}/{metric}" if filt in ("", "none") else f"{task}/{metric}/{filt}"
            value = float(value)
            if math.isfinite(value):
                flat[name] = value
    return flat


def continuous_metrics(samples: Mapping[str, Sequence[Mapping[str, Any]]]) -> dict[str, float]:
    """Mean log-probability of the correct choice, per task (multiple-choice tasks only).

    For each document: ``logprob_correct`` (sum over the correct continuation's tokens),
    ``logprob_correct_per_byte`` (that, divided by the continuation's UTF-8 bytes, as
    lm-eval's ``acc_norm`` normalises) and ``prob_correct_norm`` (the correct choice's
    probability renormalised over the choices). Each is averaged over documents.
    """
    out: dict[str, float] = {}
    for task, docs in samples.items():
        lp, lp_byte, p_norm = [], [], []
        for doc in docs:
            target = doc.get("target")
            resps = doc.get("filtered_resps") or doc.get("resps")
            args = doc.get("arguments")
            if not isinstance(target, int) or not resps or not args or len(resps) != len(args):
                continue  # not a multiple-choice document
            try:
                lls = [_loglikelihood(r) for r in resps]
            except (TypeError, ValueError, IndexError):
                continue
            if not 0 <= target < len(lls):
                continue
            continuation = args[target][1] if isinstance(args[target], list | tuple) else ""
            n_bytes = max(1, len(str(continuation).encode()))
            top = max(lls)
            z = sum(math.exp(v - top) for v in lls)
            lp.append(lls[target])
            lp_byte.append(lls[target] / n_bytes)
            p_norm.append(math.exp(lls[target] - top) / z)
        if lp:
            out[f"{task}/logprob_correct"] = sum(lp) / len(lp)
            out[f"{task}/logprob_correct_per_byte"] = sum(lp_byte) / len(lp_byte)
            out[f"{task}/prob_correct_norm"] = sum(p_norm) / len(p_norm)
    return out


def _loglikelihood(resp: Any) -> float:
    """``[ll, is_greedy]`` (filtered) or ``[[ll, is_greedy]]`` (raw) → ll."""
    while isinstance(resp, list | tuple):
        resp = resp[0]
    return float(resp)


def evaluate(
    model_dir: str | Path,
    tasks: Sequence[str],
    *,
    task_dirs: Sequence[str | Path] = (),
    num_fewshot: int | None = None,
    limit: int | None = None,
    batch_size: int = 8,
    device: str | None = None,
    dtype: str = "float32",
    samples_path: str | Path | None = None,
) -> Evaluation:
    """Run lm-eval's ``simple_evaluate`` on a saved Hugging Face model folder.

    Args:
        model_dir: the model (and tokenizer) folder.
        tasks: lm-eval task names.
        task_dirs: folders of task YAMLs; when given, only these are indexed (fast), else
            lm-eval's built-in tasks.
        num_fewshot, limit, batch_size: as in lm-eval.
        device: ``cuda``/``cpu``; None picks cuda when available.
        dtype: the model's dtype for evaluation.
        samples_path: where to write the logged samples as JSON lines (optional).

    Returns:
        lm-eval's metrics, the continuous metrics and the time taken.
    """
    import json

    import torch
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    if not tasks:
        return Evaluation({}, {}, 0.0, dict(LM_EVAL_SEEDS))
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if task_dirs:
        tm = TaskManager(include_path=[str(p) for p in task_dirs], include_defaults=False)
    else:
        tm = TaskManager()
    t0 = time.perf_counter()
    results = simple_evaluate(
        model="hf",
        model_args={"pretrained": str(model_dir), "dtype": dtype},
        tasks=list(tasks),
        num_fewshot=num_fewshot,
        limit=limit,
        batch_size=batch_size,
        device=device,
        use_cache=None,
        cache_requests=False,
        log_samples=True,
        task_manager=tm,
        random_seed=LM_EVAL_SEEDS["lm_eval_random"],
        numpy_random_seed=LM_EVAL_SEEDS["lm_eval_numpy"],
        torch_random_seed=LM_EVAL_SEEDS["lm_eval_torch"],
        fewshot_random_seed=LM_EVAL_SEEDS["lm_eval_numpy"],
        bootstrap_iters=0,
    )
    seconds = time.perf_counter() - t0
    samples = results.get("samples", {}) or {}
    if samples_path is not None:
        with Path(samples_path).open("w") as fh:
            for task, docs in samples.items():
                for doc in docs:
                    fh.write(json.dumps({"task": task, **doc}, default=str) + "\n")
    return Evaluation(
        metrics=flatten_results(results.get("results", {})),
        continuous=continuous_metrics(samples),
        seconds=seconds,
        seeds=dict(LM_EVAL_SEEDS),
    )
