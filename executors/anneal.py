"""DeepSpeed annealing entry point, launched by the ``deepspeed`` launcher (or ``torchrun``).

    deepspeed --num_gpus N executors/anneal.py --plan JOB_DIR/anneal.json

The plan (written by the worker) names the base model, the packed token array
(``[sequences, seq_len]`` int32), the DeepSpeed config and the folders to write. Training
continues from the newest *complete* checkpoint, if any: a checkpoint counts only once its
``COMPLETE`` marker exists, and the marker is written last (after every rank saved). The
data order is a pure function of the step, so a resumed run sees exactly the batches an
uninterrupted run would have seen.

Rank 0 prints one ``@@progress {json}`` line per optimizer step and touches a heartbeat file
every second; the worker turns these into journal progress and stall detection.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from executors.stages.context import JobFiles
from executors.stages.records import TrainPlan, TrainState, record_train_seconds

PROGRESS_PREFIX = "@@progress "
MARKER = "COMPLETE"
EXIT_FENCED = 76  # our attempt token is no longer current: another attempt owns the job
SHM_OP = "deepspeed_shm_comm"  # the JIT op DeepSpeed loads for CPU collectives


def complete_checkpoints(ckpt_dir: Path) -> list[tuple[int, Path]]:
    """The checkpoints that have their completion marker, oldest first."""
    found = []
    if ckpt_dir.is_dir():
        for d in ckpt_dir.iterdir():
            if d.name.startswith("step_") and (d / MARKER).is_file():
                try:
                    found.append((int(d.name[5:]), d))
                except ValueError:
                    continue
    return sorted(found)


def hash_model_dir(folder: Path) -> str:
    """sha256 over the weight files of a saved model, in name order."""
    h = hashlib.sha256()
    for f in sorted(folder.iterdir()):
        if f.suffix in (".safetensors", ".bin") and f.is_file():
            h.update(f.name.encode())
            with f.open("rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
    return h.hexdigest()


def write_marker(path: Path, payload: dict[str, Any]) -> None:
    """Write a marker atomically and durably (tmp + fsync + rename + fsync of the folder)."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w") as fh:
        json.dump(payload, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _heartbeat(path: Path, stop: threading.Event) -> None:
    while not stop.is_set():
        path.touch()
        stop.wait(1.0)


@contextlib.contextmanager
def _op_build_guard() -> Iterator[None]:
    """Load DeepSpeed's CPU communication op under a lock that dies with its holder.

    torch builds and loads a JIT op under a *baton*: a ``lock`` file in the op's build
    folder, deleted when the load ends. A trainer killed while holding it (a cancel, a
    kill -9 of its job) leaves the file behind, and every later trainer on the machine
    then waits for it forever. Our trainers load the op while holding an ``flock`` (which
    the kernel releases when its holder dies), so a baton found under the flock was left by
    a dead trainer and is removed.
    """
    import fcntl

    from torch.utils.cpp_extension import get_default_build_root

    root = Path(os.environ.get("TORCH_EXTENSIONS_DIR") or get_default_build_root())
    root.mkdir(parents=True, exist_ok=True)
    with (root / ".annealplan-op-build.lock").open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        for baton in (*root.glob(f"{SHM_OP}/lock"), *root.glob(f"*/{SHM_OP}/lock")):
            print(f"removing a stale build lock left by a killed trainer: {baton}", flush=True)
            baton.unlink(missing_ok=True)
        yield


def _preload_comm_op() -> None:
    """On CPU, load DeepSpeed's shared-memory communication op before DeepSpeed does.

    DeepSpeed caches a loaded op per process, so its own load during
    ``init_distributed`` returns this one without touching the build folder again.
    """
    from deepspeed.accelerator import get_accelerator

    if get_accelerator().device_name() != "cpu":
        return
    from deepspeed.comm.torch import build_shm_op

    with _op_build_guard():
        build_shm_op()


def _fenced(plan: TrainPlan) -> bool:
    """True when our attempt is no longer the job's current one."""
    if plan.journal is None:
        return False
    from executors.journal import Journal

    journal = Journal(plan.journal)
    try:
        return not journal.token_is_current(plan.job_id, plan.attempt_token)
    finally:
        journal.close()


class _Throughput:
    """Training tokens per second, counted from the end of the first step (which pays for
    kernel set-up and allocation)."""

    def __init__(self, tokens_per_step: int) -> None:
        self.tokens_per_step = tokens_per_step
        self.started = time.perf_counter()
        self.first_done: float | None = None
        self.tokens_since_first = 0

    def step_done(self) -> float:
        """Count one optimizer step; the rate so far."""
        now = time.perf_counter()
        if self.first_done is None:
            self.first_done = now
            return self.tokens_per_step / max(now - self.started, 1e-9)
        self.tokens_since_first += self.tokens_per_step
        return self.tokens_since_first / max(now - self.first_done, 1e-9)

    def overall(self, steps_run: int, train_seconds: float) -> float | None:
        """The run's rate, up to now (None when it ran no step)."""
        if self.first_done and self.tokens_since_first:
            return self.tokens_since_first / (time.perf_counter() - self.first_done)
        return steps_run * self.tokens_per_step / train_seconds if steps_run else None


@dataclass
class _Run:
    """One rank's training run: the plan, the DeepSpeed engine and the packed data."""

    plan: TrainPlan
    engine: Any
    data: Any
    """The packed tokens, ``[sequences, seq_len]``, memory-mapped."""
    rank: int
    world: int
    n_params: int

    @property
    def tokens_per_step(self) -> int:
        plan = self.plan
        return plan.micro_batch * plan.grad_accum * self.world * int(self.data.shape[1])

    def mfu(self, tokens_per_s: float | None) -> float | None:
        peak = self.plan.peak_flops
        if not peak or not tokens_per_s:
            return None
        return 6.0 * self.n_params * tokens_per_s / (float(peak) * self.world)

    def emit(self, payload: dict[str, Any]) -> None:
        if self.rank == 0:
            print(PROGRESS_PREFIX + json.dumps(payload), flush=True)


def _start(plan: TrainPlan) -> _Run:
    """Join the process group, load the model and the data, build the engine."""
    import deepspeed
    import numpy as np
    import torch
    import torch.distributed as dist
    from transformers import AutoModelForCausalLM

    _preload_comm_op()
    deepspeed.init_distributed(dist_backend=plan.dist_backend)
    torch.manual_seed(plan.seed)
    np.random.seed(plan.seed)
    data = np.load(str(plan.data), mmap_mode="r")
    model = AutoModelForCausalLM.from_pretrained(str(plan.model), dtype=torch.float32)
    model.config.use_cache = False
    n_params = sum(p.numel() for p in model.parameters())
    engine, _, _, _ = deepspeed.initialize(
        model=model, model_parameters=model.parameters(), config=plan.ds_config
    )
    engine.train()
    return _Run(plan, engine, data, dist.get_rank(), dist.get_world_size(), n_params)


def _resume(run: _Run) -> int:
    """Load the newest complete checkpoint, if any; the step to start from."""
    done = complete_checkpoints(run.plan.ckpt_dir)
    if not done:
        return 0
    step, path = done[-1]
    run.engine.load_checkpoint(str(run.plan.ckpt_dir), tag=path.name)
    if run.rank == 0:
        print(f"resumed from complete checkpoint {path.name}", flush=True)
    return step


def _step(run: _Run, step: int) -> float:
    """One optimizer step (its micro-batches are a pure function of ``step``); its loss."""
    import numpy as np
    import torch

    micro, accum = run.plan.micro_batch, run.plan.grad_accum
    losses = []
    for m in range(accum):
        base = ((step * accum + m) * run.world + run.rank) * micro
        batch = torch.from_numpy(np.asarray(run.data[base : base + micro], dtype=np.int64))
        batch = batch.to(run.engine.device)
        out = run.engine(input_ids=batch, labels=batch)
        run.engine.backward(out.loss)
        run.engine.step()
        losses.append(float(out.loss.detach()))
    return sum(losses) / len(losses)


def _checkpoint(run: _Run, done_steps: int) -> bool:
    """Save a checkpoint on every rank, then mark it complete; False when fenced."""
    import torch
    import torch.distributed as dist

    ckpt_dir = run.plan.ckpt_dir
    flag = torch.tensor([int(_fenced(run.plan)) if run.rank == 0 else 0])
    dist.broadcast(flag, 0)
    if int(flag.item()):
        print("attempt token is stale; another attempt owns this job", flush=True)
        return False
    tag = f"step_{done_steps}"
    run.engine.save_checkpoint(str(ckpt_dir), tag=tag, client_state={"step": done_steps})
    dist.barrier()
    if run.rank == 0:
        write_marker(ckpt_dir / tag / MARKER, {"step": done_steps})
        # Keep only the newest complete checkpoint; older ones are now redundant.
        for old_step, old in complete_checkpoints(ckpt_dir):
            if old_step < done_steps:
                shutil.rmtree(old, ignore_errors=True)
    dist.barrier()
    return True


def _record_seconds(run: _Run, throughput: _Throughput) -> None:
    """Rank 0 writes down this attempt's training seconds so far (see
    :func:`~executors.stages.records.record_train_seconds`)."""
    if run.rank == 0:
        seconds = time.perf_counter() - throughput.started
        record_train_seconds(
            JobFiles(run.plan.job_dir).train_seconds, run.plan.attempt_token, seconds
        )


def _train(run: _Run, start_step: int, throughput: _Throughput) -> bool:
    """Steps ``start_step`` to the end, with progress and checkpoints; False when fenced."""
    plan = run.plan
    recorded = time.perf_counter()
    for step in range(start_step, plan.total_steps):
        loss = _step(run, step)
        rate = throughput.step_done()
        if time.perf_counter() - recorded >= 1.0:
            _record_seconds(run, throughput)
            recorded = time.perf_counter()
        run.emit(
            {
                "step": step + 1,
                "total_steps": plan.total_steps,
                "tokens": (step + 1) * run.tokens_per_step,
                "loss": loss,
                "tokens_per_s": rate,
                "mfu": run.mfu(rate),
                "lr": run.engine.get_lr()[0],
            }
        )
        done_steps = step + 1
        due = done_steps % plan.checkpoint_every == 0 and done_steps < plan.total_steps
        if due and not _checkpoint(run, done_steps):
            return False
    return True


def _save_final(run: _Run, start_step: int, throughput: _Throughput, train_seconds: float) -> None:
    """Save the final model with its :class:`TrainState` and marker; drop the checkpoints."""
    import torch.distributed as dist

    plan = run.plan
    final_dir = plan.final_dir
    tmp = final_dir.with_name(final_dir.name + ".tmp")
    if run.rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)
    dist.barrier()
    if int(plan.ds_config.get("zero_optimization", {}).get("stage", 0)) == 3:
        run.engine.save_16bit_model(str(tmp))
        if run.rank == 0:
            run.engine.module.config.save_pretrained(tmp)
    elif run.rank == 0:
        run.engine.module.save_pretrained(tmp, safe_serialization=True)
    if run.rank == 0:
        from transformers import AutoTokenizer

        AutoTokenizer.from_pretrained(str(plan.tokenizer)).save_pretrained(tmp)
        steps_run = plan.total_steps - start_step
        tokens_per_s = throughput.overall(steps_run, train_seconds)
        state = TrainState(
            params=run.n_params,
            steps=plan.total_steps,
            steps_this_run=steps_run,
            resumed_from=start_step,
            training_tokens=plan.total_steps * run.tokens_per_step,
            tokens_per_s=tokens_per_s,
            train_seconds=train_seconds,
            world_size=run.world,
            checkpoint_hash=hash_model_dir(tmp),
            mfu=run.mfu(tokens_per_s),
        )
        state.write(tmp / "train_state.json")
        write_marker(tmp / MARKER, {"steps": plan.total_steps})
        shutil.rmtree(final_dir, ignore_errors=True)
        os.replace(tmp, final_dir)
        shutil.rmtree(plan.ckpt_dir, ignore_errors=True)  # the final model supersedes them
    dist.barrier()


def train(plan: TrainPlan) -> int:
    """Train as the plan says, resuming from the newest complete checkpoint.

    Returns:
        0 when the final model is saved, :data:`EXIT_FENCED` when a newer attempt owns the
        job.
    """
    stop = threading.Event()
    # Beat from the start: importing DeepSpeed and building its CPU communication op can
    # take minutes on a busy machine, and that is not a stall. (The launcher sets RANK.)
    if int(os.environ.get("RANK", "0")) == 0:
        threading.Thread(target=_heartbeat, args=(plan.heartbeat, stop), daemon=True).start()
    run = _start(plan)
    start_step = _resume(run)
    throughput = _Throughput(run.tokens_per_step)
    if not _train(run, start_step, throughput):
        return EXIT_FENCED
    train_seconds = time.perf_counter() - throughput.started
    _record_seconds(run, throughput)
    _save_final(run, start_step, throughput, train_seconds)
    stop.set()
    return 0


@click.command(name="anneal.py", help="Run one anneal as its plan says (rank per launcher).")
@click.option("--plan", "plan_path", required=True, type=click.Path(path_type=Path))
@click.option("--local_rank", "--local-rank", "local_rank", type=int, default=None)
def cli(plan_path: Path, local_rank: int | None) -> None:
    # The launcher passes --local_rank; the rank itself comes from the environment.
    del local_rank
    raise SystemExit(train(TrainPlan.read(plan_path)))


def main(argv: list[str] | None = None) -> None:
    """The trainer's command line (``--plan PLAN``, and the launcher's ``--local_rank``)."""
    cli.main(args=argv, prog_name="anneal.py")


if __name__ == "__main__":
    main()
