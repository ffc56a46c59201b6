"""T16 with real lm-eval: the same checkpoint evaluated twice gives the same metrics; two
different checkpoints give different metrics and share no cache (lm-eval's request and
answer caches stay off: its cache key once ignored the model, lm-eval issue #4063)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.helpers.tiny import build_causal_lm, build_tokenizer

TASK = Path(__file__).resolve().parents[1] / "executors" / "data" / "tiny_mc"


def _perturbed(src: Path, dest: Path) -> Path:
    """Another checkpoint of the same model: every weight moved a little (a training step)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(src))
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.05)
    model.save_pretrained(dest)
    AutoTokenizer.from_pretrained(str(src)).save_pretrained(dest)
    return dest


def _files(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_size for p in folder.rglob("*") if p.is_file()}


def _responses(path: Path) -> list:
    return [json.loads(line)["resps"] for line in path.read_text().splitlines()]


def test_t16_same_checkpoint_same_metrics_and_no_cache_shared(tmp_path, monkeypatch):
    import lm_eval.caching.cache as lm_cache

    from executors.evaluate import evaluate

    cache = tmp_path / "lm-eval-cache"
    monkeypatch.setenv("LM_HARNESS_CACHE_PATH", str(cache))
    monkeypatch.setattr(lm_cache, "PATH", str(cache))  # already imported: read at call time
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)  # lm-eval's sqlite answer cache would land beside a relative path
    a = build_causal_lm(tmp_path / "a", build_tokenizer(tmp_path / "tok"))
    b = _perturbed(a, tmp_path / "b")
    tasks = tmp_path / "tasks" / "tiny_mc"
    shutil.copytree(TASK, tasks)
    before = {m: _files(m) for m in (a, b, tasks)}

    def run(model: Path, tag: str):
        return evaluate(
            model,
            ["tiny_mc"],
            task_dirs=[tasks],
            limit=8,
            batch_size=8,
            device="cpu",
            samples_path=tmp_path / f"samples-{tag}.jsonl",
        )

    # A, then B, then A again: a cache keyed without the model would hand B's answers to
    # the second A (or A's to B).
    a1 = run(a, "a1")
    b1 = run(b, "b1")
    a2 = run(a, "a2")
    assert a1.metrics and a1.continuous
    assert (a2.metrics, a2.continuous) == (a1.metrics, a1.continuous)
    assert _responses(tmp_path / "samples-a2.jsonl") == _responses(tmp_path / "samples-a1.jsonl")
    assert b1.continuous != a1.continuous
    assert _responses(tmp_path / "samples-b1.jsonl") != _responses(tmp_path / "samples-a1.jsonl")
    assert a1.seeds == b1.seeds == a2.seeds
    # No cache anywhere: lm-eval's cache folder, the working folder, the checkpoints.
    assert not cache.exists() or not any(cache.iterdir())
    assert not any(work.iterdir()), list(work.iterdir())
    assert {m: _files(m) for m in (a, b, tasks) if m != tasks} == {
        m: v for m, v in before.items() if m != tasks
    }
    leftovers = set(_files(tasks)) - set(before[tasks])
    assert not [f for f in leftovers if not f.startswith("__pycache__")], leftovers
