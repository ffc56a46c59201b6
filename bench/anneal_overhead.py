"""Executor overhead: training tokens/s of the executor's DeepSpeed anneal vs a plain
PyTorch loop, on the same model, the same data and the same batch shape, in the same run.

    .venv/bin/python bench/anneal_overhead.py [--steps 40] [--hidden 256] [--layers 4] [--quick]

The executor side is the real thing: ``executors/anneal.py`` started by the ``deepspeed``
launcher with the config the worker generates (AdamW, warm-up + linear decay, gradient
clipping); its tokens/s is the one it reports (the first step excluded). The baseline is
``torch.optim.AdamW`` with the same learning-rate schedule and clipping in this process,
also timed after its first step. The goal is a ratio of at least 0.9.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import quick

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


#: ``--quick``: sizes that run in seconds (explicit flags still win)
QUICK = {"steps": 6, "micro_batch": 2, "seq_len": 32, "hidden": 64, "layers": 1}


def _texts(n: int) -> list[str]:
    import random

    rng = random.Random(0)
    words = [
        "the",
        "a",
        "of",
        "model",
        "data",
        "patient",
        "dose",
        "trial",
        "court",
        "ruling",
        "gene",
        "cell",
        "energy",
        "value",
    ]
    return [" ".join(rng.choice(words) for _ in range(40)) for _ in range(n)]


def plain_loop(model_dir: Path, data, micro: int, steps: int, lr: float) -> float:
    """Tokens/s of a plain PyTorch loop (first step excluded)."""
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    model.config.use_cache = False
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), eps=1e-8, weight_decay=0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: max(0.0, 1 - s / steps))
    seq_len = data.shape[1]
    t_first = None
    for step in range(steps):
        batch = torch.from_numpy(data[step * micro : (step + 1) * micro].astype("int64"))
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        float(loss.detach())
        if t_first is None:
            t_first = time.perf_counter()
    return (steps - 1) * micro * seq_len / (time.perf_counter() - t_first)


def executor_anneal(
    work: Path, model_dir: Path, data_path: Path, micro: int, steps: int, lr: float
) -> dict:
    """Run executors/anneal.py under the deepspeed launcher; return its train_state.json."""
    from executors.protocol import AnnealJobSpec
    from executors.stages.context import WorkerConfig
    from executors.stages.launch import ds_config, free_port, launch_command, trainer_env

    spec = AnnealJobSpec.model_validate(
        {
            "job_id": "bench",
            "base_model": "model",
            "source": {"kind": "files", "config": {}, "tokens": 1},
            "training": {"micro_batch": micro, "peak_lr": lr, "checkpoint_every_steps": 10**9},
        }
    )
    job = work / "job"
    job.mkdir()
    plan = {
        "job_id": "bench",
        "attempt_token": "",
        "journal": "",
        "job_dir": str(job),
        "ckpt_dir": str(job / "ckpt"),
        "final_dir": str(job / "final"),
        "heartbeat": str(job / "heartbeat"),
        "data": str(data_path),
        "model": str(model_dir),
        "tokenizer": str(model_dir),
        "micro_batch": micro,
        "grad_accum": 1,
        "total_steps": steps,
        "seed": 0,
        "checkpoint_every": 10**9,
        "ds_config": ds_config(spec, steps),
        "peak_flops": None,
    }
    plan_path = job / "anneal.json"
    plan_path.write_text(json.dumps(plan))
    cfg = WorkerConfig(state_dir=work, root=work, job_id="bench", token="")
    out = subprocess.run(
        launch_command(cfg, plan_path, free_port()),
        env=trainer_env(cfg, 1),
        cwd=str(job),
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        sys.exit(f"the executor's trainer failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return json.loads((job / "final" / "train_state.json").read_text())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--micro-batch", type=int, default=8)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=4)
    a = quick.parse_args(p, QUICK)

    import numpy as np

    from executors.tinymodel import build_tiny_model

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model_dir = build_tiny_model(
            work / "model",
            _texts(200),
            vocab_size=2048,
            hidden_size=a.hidden,
            layers=a.layers,
            heads=max(1, a.hidden // 64),
            max_positions=a.seq_len,
        )
        rng = np.random.default_rng(0)
        vocab = json.loads((model_dir / "config.json").read_text())["vocab_size"]
        data = rng.integers(3, vocab, size=(a.steps * a.micro_batch, a.seq_len), dtype=np.int32)
        data_path = work / "train.npy"
        np.save(data_path, data)
        lr = 1e-4
        t0 = time.perf_counter()
        state = executor_anneal(work, model_dir, data_path, a.micro_batch, a.steps, lr)
        wall = time.perf_counter() - t0
        plain = plain_loop(model_dir, data, a.micro_batch, a.steps, lr)
    executor = float(state["tokens_per_s"])
    print(
        f"model {state['params'] / 1e6:.1f}M params, {a.steps} steps of "
        f"{a.micro_batch}x{a.seq_len} tokens"
    )
    print(
        f"executor (deepspeed launcher + anneal.py): {executor:,.0f} tokens/s "
        f"(whole job incl. launch and save: {wall:.1f} s)"
    )
    print(f"plain PyTorch loop:                        {plain:,.0f} tokens/s")
    ratio = executor / plain
    print(
        f"ratio executor/plain: {ratio:.3f}  (goal >= 0.9: {'met' if ratio >= 0.9 else 'MISSED'})"
    )


if __name__ == "__main__":
    main()
