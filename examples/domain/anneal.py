"""A plain-PyTorch anneal of the demo's base model, for checking the domain's signal.

This is not the product's trainer (the executor runs DeepSpeed); it is the smallest honest
anneal: materialise the source's tokens through its real plugin kind, mix in replay tokens,
train one pass with AdamW and the learning rate decayed linearly to zero, save the model
and evaluate it with lm-eval.
"""

from __future__ import annotations

import importlib
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from examples.domain import base_model as bm
from examples.domain.data import SourceSpec

# The built-in source-kind modules the demo uses (each registers through its hook).
KIND_MODULES = (
    "plugins.sources.files",
    "plugins.sources.licensed",
    "plugins.sources.synthetic",
    "plugins.sources.filtered",
)


def source_kinds() -> dict[str, Any]:
    """The built-in source kinds the demo uses, by name (a module that fails to import
    raises: a renamed kind must not silently drop out of the demo)."""
    kinds: dict[str, Any] = {}
    for name in KIND_MODULES:
        module = importlib.import_module(name)
        module.register_source_kinds(lambda kind: kinds.__setitem__(kind.name, kind))
    return kinds


@dataclass(frozen=True, slots=True)
class Tokens:
    """Materialised token ids and what curating them cost."""

    ids: Any  # numpy array
    curation_cost: float
    curation_unit: str
    seconds: float
    details: dict[str, Any] = field(default_factory=dict)


def materialize(
    spec: SourceSpec, tokens: int, dest: Path, seed: int, tokenizer, kinds: dict[str, Any]
) -> Tokens:
    """Materialise ``tokens`` tokens of a source through its plugin kind and load them."""
    from plugins.sources.packing import load_tokens

    if spec.kind not in kinds:
        raise RuntimeError(f"source kind {spec.kind!r} is not available here")
    kind = kinds[spec.kind]
    t0 = time.perf_counter()
    shutil.rmtree(dest, ignore_errors=True)
    done = kind.materialize(kind.parse_config(spec.config), tokens, dest, seed, tokenizer)
    ids = load_tokens(done.dest)
    return Tokens(
        ids,
        float(done.curation.cost),
        done.curation.unit,
        time.perf_counter() - t0,
        dict(done.curation.details),
    )


def mix_rows(source_ids, replay_ids, seq_len: int):
    """Cut each stream into rows of ``seq_len`` and stack them (shuffled by the trainer)."""
    import numpy as np
    import torch

    rows = []
    for ids in (source_ids, replay_ids):
        if ids is None or len(ids) < seq_len:
            continue
        n = len(ids) // seq_len
        rows.append(np.asarray(ids[: n * seq_len], dtype=np.int64).reshape(n, seq_len))
    return torch.from_numpy(np.concatenate(rows))


def anneal(
    base_dir: Path,
    rows,
    out_dir: Path,
    *,
    lr: float = 5e-3,
    batch_size: int = 4,
    seed: int = 0,
) -> dict[str, float]:
    """Train a copy of the base model on ``rows`` for one pass, LR linearly to zero.

    Args:
        base_dir: the base model folder.
        rows: a (n, seq_len) LongTensor of token ids.
        out_dir: where the annealed model and tokenizer are saved.
        lr: the peak learning rate (no warmup: an anneal starts from a trained model).
        batch_size: rows per step. Small on purpose: a short anneal needs optimizer steps
            more than big batches (80k tokens are 156 steps of 4×128), and on CPU a batch
            of 4 runs as many tokens per second as a batch of 16.
        seed: data-order seed.

    Returns:
        ``final_loss`` and ``train_seconds``.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    t0 = time.perf_counter()
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    loss = bm.train_lm(model, rows, lr=lr, warmup_steps=0, batch_size=batch_size, seed=seed)
    shutil.rmtree(out_dir, ignore_errors=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return {"final_loss": loss, "train_seconds": time.perf_counter() - t0}
