"""Stage 2: train with DeepSpeed through its real launcher, relaying progress and watching
the trainer's heartbeat.

The trainer resumes from its newest complete checkpoint by itself; this stage writes its
plan, launches it, and ends with the final model's :class:`TrainState` (or skips straight
to it when a previous attempt finished training).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from executors.anneal import EXIT_FENCED, MARKER, PROGRESS_PREFIX
from executors.paths import resolve_under
from executors.processes import kill_process_tree
from executors.protocol import AnnealJobSpec, Progress
from executors.stages.context import Fenced, JobFailed, WorkerConfig
from executors.stages.launch import (
    clean_up_launch,
    ds_config,
    free_port,
    launch_command,
    trainer_env,
    world_size,
)
from executors.stages.records import Manifest, RecordUnreadable, TrainPlan, TrainState

#: called with every progress line of the trainer's rank 0
OnProgress = Callable[[Progress], None]
_PROGRESS_FIELDS = set(Progress.model_fields)


def train(
    spec: AnnealJobSpec, cfg: WorkerConfig, manifest: Manifest, on_progress: OnProgress
) -> TrainState:
    """Run the trainer to its end (or read the state of a finished run).

    Args:
        spec: the job.
        cfg: the attempt's configuration.
        manifest: the packed data's manifest (from :func:`materialize`).
        on_progress: called with each optimizer step's progress.

    Returns:
        The final model's training state.

    Raises:
        JobFailed: too few tokens for one step, or the trainer stopped beating.
        Fenced: the trainer found that a newer attempt owns the job.
        RuntimeError: the trainer crashed (a retry may succeed).
    """
    files = cfg.files
    if (files.final / MARKER).is_file():
        try:
            state = TrainState.read(files.train_state)
        except RecordUnreadable as e:
            print(f"{e}; training again", flush=True)
            shutil.rmtree(files.final, ignore_errors=True)
        else:
            print("training already complete; skipping to evaluation", flush=True)
            return state
    world = world_size(cfg)
    plan = make_plan(spec, cfg, manifest, world)
    plan.write(files.plan, indent=1)
    files.heartbeat.unlink(missing_ok=True)
    for stale in clean_up_launch(files.folder):
        print(f"removed a shared-memory buffer left by a killed attempt: {stale}", flush=True)
    port = free_port()
    # written down so that whoever outlives this launch can clean up after it
    files.master_port.write_text(str(port))
    cmd = launch_command(cfg, files.plan, port)
    print("launch: " + " ".join(cmd), flush=True)
    try:
        return _run_trainer(cmd, cfg, world, on_progress)
    finally:
        # the launch is over (done, failed or killed): its ranks' buffers go with it
        clean_up_launch(files.folder)


def make_plan(spec: AnnealJobSpec, cfg: WorkerConfig, manifest: Manifest, world: int) -> TrainPlan:
    """The trainer's plan for ``world`` processes.

    Raises:
        JobFailed: the mixture holds fewer sequences than one optimizer step needs.
        PathRefused: the model or tokenizer left the root since the job was checked.
    """
    t = spec.training
    per_step = t.micro_batch * t.grad_accum * world
    total_steps = manifest.sequences // per_step
    if total_steps < 1:
        raise JobFailed(
            "too_few_tokens",
            f"the mixture holds {manifest.sequences} sequences of {t.seq_len} tokens; one "
            f"optimizer step needs {per_step} (micro_batch × grad_accum × world): raise tokens "
            "or lower the batch",
        )
    files = cfg.files
    return TrainPlan(
        job_id=spec.job_id,
        attempt_token=cfg.token,
        journal=cfg.journal_path,
        job_dir=files.folder,
        ckpt_dir=files.checkpoints,
        final_dir=files.final,
        heartbeat=files.heartbeat,
        data=files.train_data,
        model=resolve_under(cfg.root, spec.base_model, field="base_model", folder=True),
        tokenizer=resolve_under(
            cfg.root, spec.tokenizer or spec.base_model, field="tokenizer", folder=True
        ),
        micro_batch=t.micro_batch,
        grad_accum=t.grad_accum,
        total_steps=total_steps,
        seed=t.seed,
        checkpoint_every=t.checkpoint_every_steps,
        ds_config=ds_config(spec, total_steps),
        peak_flops=cfg.peak_flops,
    )


def _run_trainer(
    cmd: list[str], cfg: WorkerConfig, world: int, on_progress: OnProgress
) -> TrainState:
    """Run the launcher to its end, relaying progress; the trainer's final state."""
    files = cfg.files
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        bufsize=1,
        env=trainer_env(cfg, world),
        cwd=str(files.folder),
    )
    reader = threading.Thread(target=_relay, args=(proc, on_progress), daemon=True)
    reader.start()
    try:
        _watch_heartbeat(proc, files.heartbeat, cfg.heartbeat_timeout_s)
    except JobFailed:
        reader.join(timeout=5)
        raise
    reader.join(timeout=30)
    if proc.returncode == EXIT_FENCED:
        raise Fenced("the trainer found that a newer attempt owns the job")
    if proc.returncode != 0 or not (files.final / MARKER).is_file():
        raise RuntimeError(f"the trainer exited with code {proc.returncode}")
    return TrainState.read(files.train_state)


def _relay(proc: subprocess.Popen[str], on_progress: OnProgress) -> None:
    """Echo the launcher's output to ours; hand each progress line to ``on_progress``."""
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith(PROGRESS_PREFIX):
            progress = _parse_progress(line[len(PROGRESS_PREFIX) :])
            if progress is not None:
                on_progress(progress)
        sys.stdout.write(line)
        sys.stdout.flush()


def _parse_progress(text: str) -> Progress | None:
    try:
        payload = json.loads(text)
        return Progress(**{k: v for k, v in payload.items() if k in _PROGRESS_FIELDS})
    except (ValueError, TypeError, AttributeError):
        return None  # not a progress line after all: it is still echoed to the log


def _watch_heartbeat(proc: subprocess.Popen[str], heartbeat: Path, timeout_s: float) -> None:
    """Wait for the launcher to exit; kill its tree when the trainer stops beating.

    Raises:
        JobFailed: no heartbeat for ``timeout_s`` seconds (the tree was killed).
    """
    launched = time.time()
    while proc.poll() is None:
        time.sleep(0.5)
        try:
            beat = heartbeat.stat().st_mtime
        except FileNotFoundError:
            beat = launched
        silent = time.time() - max(beat, launched)
        if silent > timeout_s:
            # Not the whole group: the worker that runs this stage leads it.
            kill_process_tree(proc.pid, grace_s=0)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
            raise JobFailed(
                "stalled",
                f"the trainer sent no heartbeat for {silent:.0f} s (limit "
                f"{timeout_s:.0f} s); it was killed",
            )
