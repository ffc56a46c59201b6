"""One attempt of one job: materialise → train → evaluate → report.

The daemon starts ``python -m executors.worker`` in a new session (its own process group)
with the job's attempt token; the launcher and its trainers inherit the group, so cancelling
kills them all with one ``killpg``. Every stage is resumable: the packed data, the
checkpoints and the final model each have a completion marker, and a stage whose output is
complete is skipped. The per-job lock file (``flock``) plus the attempt token fence every
write, so two attempts of one job never train at once.

Exit codes: 0 done (result in the journal), 3 failed for good (error in the journal, no
retry), 75 locked by another live attempt, 76 fenced (a newer attempt owns the job), anything
else a crash that the daemon may retry.

The trainer is ``executors/anneal.py`` under the chosen launcher. Setting the environment
variable ``ANNEALPLAN_EXECUTOR_TRAINER`` (in the daemon's environment, which its workers
inherit) to a Python script runs ``python SCRIPT --plan PLAN`` instead, with the same plan,
heartbeat and checkpoint contract: fault-injection tests use it to stop a trainer between
two shard writes, which real DeepSpeed cannot be made to do on cue.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import importlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from executors.anneal import EXIT_FENCED, MARKER, PROGRESS_PREFIX
from executors.journal import Journal
from executors.paths import PathRefused, check_spec_paths, resolve_under
from executors.protocol import (
    AnnealJobSpec,
    CurationSpent,
    JobError,
    JobResult,
    JobState,
    Progress,
)

EXIT_FAILED = 3
EXIT_LOCKED = 75
JOURNAL_NAME = "journal.sqlite3"
_PROGRESS_FIELDS = set(Progress.model_fields)


class JobFailed(Exception):
    """A failure that retrying cannot fix (bad data, bad config, stalled trainer)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    """What the daemon tells a worker (also how tests run one by hand)."""

    state_dir: Path
    root: Path
    job_id: str
    token: str
    gpus: int = 1
    hostfile: Path | None = None
    launcher: str = "deepspeed"
    heartbeat_timeout_s: float = 120.0
    peak_flops: float | None = None
    plugins: tuple[str, ...] = ()

    @property
    def job_dir(self) -> Path:
        return job_dir(self.state_dir, self.job_id)


def job_dir(state_dir: Path, job_id: str) -> Path:
    return state_dir / "jobs" / job_id


def _git_sha() -> str:
    here = Path(__file__).resolve().parent.parent
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


# -- plugins -------------------------------------------------------------------------------


def load_source_kinds(extra: tuple[str, ...] = ()) -> dict[str, Any]:
    """Source kinds from the installed plugins (built-ins + entry points) and ``extra``
    modules (dotted names or ``.py`` files the daemon was told to load)."""
    from plugins.manager import collect, make_plugin_manager

    pm, problems = make_plugin_manager()
    for i, name in enumerate(extra):
        pm.register(_import_plugin(name, i), name=f"executor-extra-{i}:{name}")
    pm.check_pending()
    registry = collect(pm, {}, problems=problems)
    return dict(registry.source_kinds)


def _import_plugin(name: str, index: int) -> Any:
    if name.endswith(".py"):
        spec = importlib.util.spec_from_file_location(f"_annealplan_extra_{index}", name)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot load plugin file {name}")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    return importlib.import_module(name)


# -- stages --------------------------------------------------------------------------------


def materialize(
    spec: AnnealJobSpec, cfg: WorkerConfig, tokenizer: Any, kinds: dict[str, Any]
) -> dict[str, Any]:
    """Materialise source and replay tokens through the plugins and pack the mixture.

    Writes ``data/train.npy`` (``[sequences, seq_len]`` int32, rows shuffled with the job's
    seed) and ``data/manifest.json`` last; a complete manifest means the stage is done.
    """
    import numpy as np

    data_dir = cfg.job_dir / "data"
    manifest_path = data_dir / "manifest.json"
    if manifest_path.is_file():
        return json.loads(manifest_path.read_text())
    shutil.rmtree(data_dir, ignore_errors=True)
    work = cfg.job_dir / "data.tmp"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    seed = spec.training.seed
    seq_len = spec.training.seq_len
    parts = []
    if spec.source is not None:
        parts.append(("source", spec.source.kind, spec.source.config, spec.source.tokens))
    if spec.replay is not None and spec.replay_tokens() > 0:
        parts.append(
            ("replay", spec.replay.source.kind, spec.replay.source.config, spec.replay_tokens())
        )
    blocks = []
    curation: list[dict[str, Any]] = []
    for role, kind_name, raw, tokens in parts:
        kind = kinds.get(kind_name)
        if kind is None:
            raise JobFailed(
                "unknown_source_kind",
                f"{role}: no installed plugin provides source kind {kind_name!r}; "
                f"installed: {', '.join(sorted(kinds)) or 'none'}",
            )
        try:
            config = kind.parse_config(raw)
        except Exception as e:
            raise JobFailed("invalid_source_config", f"{role}.config: {e}") from None
        t0 = time.perf_counter()
        try:
            mat = kind.materialize(config, int(tokens), work / role, seed, tokenizer)
        except Exception as e:
            # A plugin's error (missing files, too few tokens) will not fix itself on retry.
            raise JobFailed("materialize_failed", f"{role} ({kind_name}): {e}") from None
        seconds = time.perf_counter() - t0
        ids = np.concatenate(
            [np.load(Path(mat.dest) / shard).astype(np.int32).ravel() for shard in mat.shards]
        )
        n = len(ids) // seq_len
        blocks.append(ids[: n * seq_len].reshape(n, seq_len))
        cur = mat.curation
        curation.append(
            CurationSpent(
                role=role,
                kind=kind_name,
                tokens=int(mat.tokens),
                cost=float(cur.cost),
                unit=str(cur.unit),
                seconds=float(cur.seconds or seconds),
                content_hash=mat.content_hash,
                details={
                    "generator_tokens": cur.generator_tokens,
                    "documents_scored": cur.documents_scored,
                    "documents_used": mat.documents_used,
                    **dict(cur.details),
                },
            ).model_dump(mode="json")
        )
    packed = np.concatenate(blocks) if blocks else np.zeros((0, seq_len), np.int32)
    order = np.random.default_rng(seed).permutation(len(packed))
    packed = np.ascontiguousarray(packed[order])
    digest = hashlib.sha256(f"{packed.shape}".encode() + packed.tobytes()).hexdigest()
    np.save(work / "train.npy", packed)
    for role, *_ in parts:
        shutil.rmtree(work / role, ignore_errors=True)
    manifest = {
        "data_hash": digest,
        "sequences": len(packed),
        "seq_len": seq_len,
        "curation": curation,
    }
    (work / "manifest.json").write_text(json.dumps(manifest))
    os.replace(work, data_dir)
    return manifest


def world_size(cfg: WorkerConfig) -> int:
    """Processes the launcher starts: slots in the hostfile, else ``--gpus``."""
    if cfg.hostfile is None:
        return max(1, cfg.gpus)
    total = 0
    for line in cfg.hostfile.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        slots = [p for p in line.split() if p.startswith("slots=")]
        total += int(slots[0].split("=", 1)[1]) if slots else 1
    return max(1, total)


def ds_config(spec: AnnealJobSpec, total_steps: int) -> dict[str, Any]:
    """The DeepSpeed config: AdamW (torch's), warm-up then linear decay to zero."""
    t = spec.training
    zero: dict[str, Any] = {"stage": t.zero_stage}
    if t.zero_stage == 3:
        zero["stage3_gather_16bit_weights_on_model_save"] = True
    return {
        **t.ds_config_extra,
        "train_micro_batch_size_per_gpu": t.micro_batch,
        "gradient_accumulation_steps": t.grad_accum,
        "optimizer": {
            "type": "AdamW",
            "params": {
                "lr": t.peak_lr,
                "betas": [0.9, 0.95],
                "eps": 1e-8,
                "weight_decay": t.weight_decay,
                # torch's AdamW: DeepSpeed's FusedAdam would JIT-compile for ~40 s on CPU.
                "torch_adam": True,
            },
        },
        "scheduler": {
            "type": "WarmupDecayLR",
            "params": {
                "total_num_steps": total_steps,
                "warmup_min_lr": 0.0,
                "warmup_max_lr": t.peak_lr,
                "warmup_num_steps": max(1, round(t.warmup_fraction * total_steps)),
                "warmup_type": "linear",
            },
        },
        "zero_optimization": zero,
        "bf16": {"enabled": t.bf16},
        "gradient_clipping": t.ds_config_extra.get("gradient_clipping", 1.0),
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


TRAINER_ENV = "ANNEALPLAN_EXECUTOR_TRAINER"


def _launch_command(cfg: WorkerConfig, plan_path: Path, port: int) -> list[str]:
    if override := os.environ.get(TRAINER_ENV):
        return [sys.executable, override, "--plan", str(plan_path)]
    script = str(Path(__file__).with_name("anneal.py"))
    if cfg.launcher == "torchrun":
        return [
            sys.executable,
            "-m",
            "torch.distributed.run",
            f"--nproc_per_node={max(1, cfg.gpus)}",
            f"--master_port={port}",
            script,
            "--plan",
            str(plan_path),
        ]
    launcher = Path(sys.executable).with_name("deepspeed")
    cmd = [str(launcher) if launcher.exists() else "deepspeed"]
    if cfg.hostfile is not None:
        cmd += ["--hostfile", str(cfg.hostfile)]
    else:
        cmd += ["--num_gpus", str(max(1, cfg.gpus))]
    return [*cmd, "--master_port", str(port), script, "--plan", str(plan_path)]


#: where DeepSpeed's CPU communication op keeps its all-reduce buffers
SHM_DIR = Path("/dev/shm")
#: their name: {prefix}_{uid}_{master addr}_{master port}_{rank} (deepspeed/ops/csrc/cpu/comm)
SHM_BUFFER = "deepspeed_allreduce_buffer"
#: the master port of a job's current launch, in its job folder
MASTER_PORT_FILE = "master_port"


def remove_shm_buffers(port: int) -> list[Path]:
    """Remove the shared-memory all-reduce buffers of the launch that used ``port``.

    DeepSpeed's CPU communication op creates one buffer per rank (about 70 MB of RAM each,
    in ``/dev/shm``) and never unlinks it, so every CPU launch would keep 70 MB per rank
    until the machine reboots. Only this user's buffers of that launch are touched.

    Returns:
        The files removed.
    """
    if not SHM_DIR.is_dir():
        return []
    prefix = f"{SHM_BUFFER}_{os.getuid()}_"
    removed = []
    for p in SHM_DIR.glob(f"{prefix}*_{port}_*"):
        if p.name.split("_")[-2] == str(port):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
                removed.append(p)
    return removed


def clean_up_launch(folder: Path) -> list[Path]:
    """Remove the buffers of the job's last launch (its port is in ``MASTER_PORT_FILE``).

    Called by the worker when its launch ends, before a new attempt launches (a killed
    attempt could not clean up), and by the daemon when it reaps or kills a worker that
    was killed with its trainers. The launch's ranks must have exited.
    """
    port_file = folder / MASTER_PORT_FILE
    try:
        port = int(port_file.read_text())
    except (OSError, ValueError):
        return []
    removed = remove_shm_buffers(port)
    port_file.unlink(missing_ok=True)
    return removed


def _trainer_env(cfg: WorkerConfig, world: int) -> dict[str, str]:
    import torch

    env = dict(os.environ)
    package_parent = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_parent, env.get("PYTHONPATH")) if p)
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    if not torch.cuda.is_available():
        env.setdefault("DS_ACCELERATOR", "cpu")
        if world > 1:
            # The job's thread budget (set by the daemon) is shared by its ranks.
            budget = int(env.get("OMP_NUM_THREADS") or os.cpu_count() or 1)
            env["OMP_NUM_THREADS"] = str(max(1, budget // world))
    return env


def _kill_tree(proc: subprocess.Popen[str]) -> None:
    """Kill the launcher and every process below it (not our own group)."""
    import psutil

    try:
        parent = psutil.Process(proc.pid)
        procs = [*parent.children(recursive=True), parent]
    except psutil.NoSuchProcess:
        procs = []
    for p in procs:
        with contextlib.suppress(psutil.Error):
            p.kill()
    psutil.wait_procs(procs, timeout=10)
    with contextlib.suppress(Exception):
        proc.wait(timeout=5)


def train(
    spec: AnnealJobSpec, cfg: WorkerConfig, journal: Journal, manifest: dict[str, Any]
) -> dict[str, Any]:
    """Launch the real launcher on anneal.py; relay progress; watch the trainer's heartbeat.

    Returns:
        The final model's ``train_state.json``.
    """
    final_dir = cfg.job_dir / "final"
    state_file = final_dir / "train_state.json"
    if (final_dir / MARKER).is_file():
        print("training already complete; skipping to evaluation", flush=True)
        return json.loads(state_file.read_text())
    t = spec.training
    world = world_size(cfg)
    per_step = t.micro_batch * t.grad_accum * world
    total_steps = int(manifest["sequences"]) // per_step
    if total_steps < 1:
        raise JobFailed(
            "too_few_tokens",
            f"the mixture holds {manifest['sequences']} sequences of {t.seq_len} tokens; one "
            f"optimizer step needs {per_step} (micro_batch × grad_accum × world): raise tokens "
            "or lower the batch",
        )
    model_dir = resolve_under(cfg.root, spec.base_model, field="base_model")
    tok_dir = resolve_under(cfg.root, spec.tokenizer or spec.base_model, field="tokenizer")
    heartbeat = cfg.job_dir / "heartbeat"
    plan = {
        "job_id": spec.job_id,
        "attempt_token": cfg.token,
        "journal": str(cfg.state_dir / JOURNAL_NAME),
        "job_dir": str(cfg.job_dir),
        "ckpt_dir": str(cfg.job_dir / "ckpt"),
        "final_dir": str(final_dir),
        "heartbeat": str(heartbeat),
        "data": str(cfg.job_dir / "data" / "train.npy"),
        "model": str(model_dir),
        "tokenizer": str(tok_dir),
        "micro_batch": t.micro_batch,
        "grad_accum": t.grad_accum,
        "total_steps": total_steps,
        "seed": t.seed,
        "checkpoint_every": t.checkpoint_every_steps,
        "ds_config": ds_config(spec, total_steps),
        "peak_flops": cfg.peak_flops,
    }
    plan_path = cfg.job_dir / "anneal.json"
    plan_path.write_text(json.dumps(plan, indent=1))
    heartbeat.unlink(missing_ok=True)
    for stale in clean_up_launch(cfg.job_dir):
        print(f"removed a shared-memory buffer left by a killed attempt: {stale}", flush=True)
    port = _free_port()
    # written down so that whoever outlives this launch can clean up after it
    (cfg.job_dir / MASTER_PORT_FILE).write_text(str(port))
    cmd = _launch_command(cfg, plan_path, port)
    print("launch: " + " ".join(cmd), flush=True)
    try:
        return _run_trainer(cmd, cfg, spec, journal, world, heartbeat, final_dir, state_file)
    finally:
        # the launch is over (done, failed or killed): its ranks' buffers go with it
        clean_up_launch(cfg.job_dir)


def _run_trainer(
    cmd: list[str],
    cfg: WorkerConfig,
    spec: AnnealJobSpec,
    journal: Journal,
    world: int,
    heartbeat: Path,
    final_dir: Path,
    state_file: Path,
) -> dict[str, Any]:
    """Run the launcher to its end, relaying progress; the trainer's final state."""
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        bufsize=1,
        env=_trainer_env(cfg, world),
        cwd=str(cfg.job_dir),
    )
    launched = time.time()
    last_write = [0.0]

    def relay() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith(PROGRESS_PREFIX):
                try:
                    payload = json.loads(line[len(PROGRESS_PREFIX) :])
                except ValueError:
                    payload = None
                if payload is not None:
                    progress = Progress(
                        **{k: v for k, v in payload.items() if k in _PROGRESS_FIELDS}
                    )
                    now = time.time()
                    last = payload.get("step") == payload.get("total_steps")
                    if now - last_write[0] >= 0.5 or last:
                        journal.heartbeat(spec.job_id, cfg.token, progress)
                        last_write[0] = now
            sys.stdout.write(line)
            sys.stdout.flush()

    reader = threading.Thread(target=relay, daemon=True)
    reader.start()
    while proc.poll() is None:
        time.sleep(0.5)
        try:
            beat = heartbeat.stat().st_mtime
        except FileNotFoundError:
            beat = launched
        silent = time.time() - max(beat, launched)
        if silent > cfg.heartbeat_timeout_s:
            _kill_tree(proc)
            reader.join(timeout=5)
            raise JobFailed(
                "stalled",
                f"the trainer sent no heartbeat for {silent:.0f} s (limit "
                f"{cfg.heartbeat_timeout_s:.0f} s); it was killed",
            )
    reader.join(timeout=30)
    if proc.returncode == EXIT_FENCED:
        raise SystemExit(EXIT_FENCED)
    if proc.returncode != 0 or not (final_dir / MARKER).is_file():
        raise RuntimeError(f"the trainer exited with code {proc.returncode}")
    return json.loads(state_file.read_text())


def run(cfg: WorkerConfig) -> int:
    """Run one attempt; see the module docstring for exit codes."""
    cfg.job_dir.mkdir(parents=True, exist_ok=True)
    lock_fd = os.open(cfg.job_dir / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print("another attempt of this job still holds its lock", flush=True)
        return EXIT_LOCKED
    journal = Journal(cfg.state_dir / JOURNAL_NAME)
    if not journal.token_is_current(cfg.job_id, cfg.token):
        print("attempt token is stale; exiting", flush=True)
        return EXIT_FENCED
    spec = journal.spec(cfg.job_id)
    assert spec is not None
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(2.0):
            journal.heartbeat(cfg.job_id, cfg.token)

    threading.Thread(target=beat, daemon=True).start()
    try:
        check_spec_paths(spec, cfg.root, deny=(cfg.state_dir,), plugins=cfg.plugins)
        # Relative paths in sources' configs resolve under the root.
        os.chdir(cfg.root)
        from transformers import AutoTokenizer

        tok_dir = resolve_under(cfg.root, spec.tokenizer or spec.base_model, field="tokenizer")
        tokenizer = AutoTokenizer.from_pretrained(str(tok_dir))
        kinds = load_source_kinds(cfg.plugins)
        manifest = materialize(spec, cfg, tokenizer, kinds)
        if not journal.advance(cfg.job_id, cfg.token, JobState.TRAINING):
            return EXIT_FENCED
        state = train(spec, cfg, journal, manifest)
        if not journal.advance(cfg.job_id, cfg.token, JobState.EVALUATING):
            return EXIT_FENCED
        result = evaluate_and_report(spec, cfg, manifest, state)
        if not journal.finish(cfg.job_id, JobState.SUCCEEDED, token=cfg.token, result=result):
            return EXIT_FENCED
        print(f"job {cfg.job_id} succeeded", flush=True)
        return 0
    except PathRefused as e:
        journal.finish(
            cfg.job_id,
            JobState.FAILED,
            token=cfg.token,
            error=JobError(code="path_refused", message=f"{e.field}: {e.message}"),
        )
        return EXIT_FAILED
    except JobFailed as e:
        print(f"job failed: {e.code}: {e.message}", flush=True)
        journal.finish(
            cfg.job_id,
            JobState.FAILED,
            token=cfg.token,
            error=JobError(code=e.code, message=e.message),
        )
        return EXIT_FAILED
    finally:
        stop.set()


def evaluate_and_report(
    spec: AnnealJobSpec, cfg: WorkerConfig, manifest: dict[str, Any], state: dict[str, Any]
) -> JobResult:
    """Evaluate the final model and assemble the job's result."""
    from executors.evaluate import evaluate

    final_dir = cfg.job_dir / "final"
    ev = spec.evaluation
    task_dirs = [
        resolve_under(cfg.root, d, field=f"evaluation.task_dirs.{i}")
        for i, d in enumerate(ev.task_dirs)
    ]
    import torch

    dtype = "bfloat16" if spec.training.bf16 and torch.cuda.is_available() else "float32"
    evaluation = evaluate(
        final_dir,
        ev.tasks,
        task_dirs=task_dirs,
        num_fewshot=ev.num_fewshot,
        limit=ev.limit,
        batch_size=ev.batch_size,
        dtype=dtype,
        samples_path=cfg.job_dir / "samples.jsonl",
    )
    params = int(state["params"])
    tokens = int(state["training_tokens"])
    return JobResult(
        job_id=spec.job_id,
        metrics=evaluation.metrics,
        continuous=evaluation.continuous,
        params=params,
        training_tokens=tokens,
        source_tokens=spec.source_tokens(),
        replay_tokens=spec.replay_tokens(),
        training_flops=6.0 * params * tokens,
        curation=[CurationSpent.model_validate(c) for c in manifest["curation"]],
        steps=int(state["steps"]),
        tokens_per_s=state.get("tokens_per_s"),
        mfu=state.get("mfu"),
        train_seconds=float(state["train_seconds"]),
        eval_seconds=evaluation.seconds,
        versions=versions(),
        seeds={"training": spec.training.seed, "data": spec.training.seed, **evaluation.seeds},
        data_hash=manifest["data_hash"],
        checkpoint_hash=state["checkpoint_hash"],
        world_size=int(state.get("world_size", 1)),
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Run one attempt of one executor job.")
    p.add_argument("--state", required=True, type=Path)
    p.add_argument("--root", required=True, type=Path)
    p.add_argument("--job-id", required=True)
    p.add_argument("--token-env", default="ANNEALPLAN_ATTEMPT_TOKEN")
    p.add_argument("--gpus", type=int, default=1)
    p.add_argument("--hostfile", type=Path)
    p.add_argument("--launcher", choices=("deepspeed", "torchrun"), default="deepspeed")
    p.add_argument("--heartbeat-timeout", type=float, default=120.0)
    p.add_argument("--peak-flops", type=float)
    p.add_argument("--plugin", action="append", default=[])
    a = p.parse_args(argv)
    cfg = WorkerConfig(
        state_dir=a.state.resolve(),
        root=a.root.resolve(),
        job_id=a.job_id,
        # The token comes through the environment so it never shows in `ps`.
        token=os.environ.pop(a.token_env, ""),
        gpus=a.gpus,
        hostfile=a.hostfile,
        launcher=a.launcher,
        heartbeat_timeout_s=a.heartbeat_timeout,
        peak_flops=a.peak_flops,
        plugins=tuple(a.plugin),
    )
    try:
        return run(cfg)
    except SystemExit as e:
        return int(e.code or 0)


if __name__ == "__main__":
    sys.exit(main())
