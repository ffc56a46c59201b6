"""Tiny local tokenizers and models for tests: built in seconds, no hub downloads.

Use the session-scoped fixtures from a conftest::

    from tests.helpers.tiny import tiny_causal_lm, tiny_classifier, tiny_tokenizer  # noqa: F401

or call the builders directly (each writes a ``save_pretrained`` folder and reuses it when
it is already there). Everything is seeded, so two builds give the same weights.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

WORDS = [
    "the",
    "a",
    "of",
    "and",
    "to",
    "in",
    "is",
    "was",
    "for",
    "on",
    "with",
    "as",
    "by",
    "at",
    "from",
    "this",
    "that",
    "which",
    "patient",
    "dose",
    "trial",
    "theorem",
    "proof",
    "lemma",
    "integer",
    "prime",
    "function",
    "matrix",
    "court",
    "ruling",
    "contract",
    "clause",
    "protein",
    "cell",
    "gene",
    "enzyme",
    "reaction",
    "energy",
    "model",
    "data",
    "result",
    "study",
    "method",
    "analysis",
    "increase",
    "decrease",
    "significant",
    "clinical",
    "symptom",
    "treatment",
    "therapy",
    "equation",
    "solution",
    "value",
    "number",
    "set",
    "group",
    "field",
    "vector",
    "space",
    "law",
    "statute",
    "plaintiff",
    "defendant",
    "evidence",
]

SPECIALS = ("<s>", "</s>", "<pad>", "<unk>")


def sentences(n: int, seed: int = 0, words: tuple[str, ...] = tuple(WORDS)) -> list[str]:
    """``n`` deterministic pseudo-English sentences."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        body = " ".join(rng.choice(words) for _ in range(rng.randint(6, 18)))
        out.append(body[0].upper() + body[1:] + ".")
    return out


def documents(n: int, seed: int = 0) -> list[str]:
    """``n`` deterministic pseudo-documents of 2 to 6 sentences."""
    rng = random.Random(seed)
    sents = sentences(6 * n, seed)
    return [" ".join(sents[6 * i : 6 * i + rng.randint(2, 6)]) for i in range(n)]


NOISE = ("zzq", "xx#", "!!!", "qwv", "lorem", "@@", "kkk", "~~")


def noise_docs(n: int, seed: int) -> list[str]:
    """Documents a quality classifier should reject: strings of junk tokens."""
    rng = random.Random(seed)
    return [" ".join(rng.choice(NOISE) for _ in range(rng.randint(15, 40))) for _ in range(n)]


def write_jsonl(path: Path, texts: list[str], field: str = "text", **extra) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        for t in texts:
            f.write(json.dumps({field: t, **extra}) + "\n")
    return path


def build_tokenizer(folder: Path, vocab_size: int = 400) -> Path:
    """A byte-level BPE trained on :func:`documents`, saved as a PreTrainedTokenizerFast."""
    folder = Path(folder)
    if (folder / "tokenizer.json").exists():
        return folder
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIALS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(documents(300, seed=123), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
    )
    folder.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(folder)
    return folder


def load_tokenizer(folder: Path):
    """Reload a saved tokenizer (AutoTokenizer, offline)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(folder))


def _llama_config(tokenizer, **extra):
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
        **extra,
    )


def build_causal_lm(folder: Path, tokenizer_folder: Path) -> Path:
    """A randomly initialised 2-layer LlamaForCausalLM (hidden 64) with its tokenizer."""
    folder = Path(folder)
    if (folder / "config.json").exists():
        return folder
    import torch
    from transformers import LlamaForCausalLM

    tokenizer = load_tokenizer(tokenizer_folder)
    torch.manual_seed(0)
    model = LlamaForCausalLM(_llama_config(tokenizer))
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def build_classifier(folder: Path, tokenizer_folder: Path) -> Path:
    """A randomly initialised 2-label LlamaForSequenceClassification with its tokenizer."""
    folder = Path(folder)
    if (folder / "config.json").exists():
        return folder
    import torch
    from transformers import LlamaForSequenceClassification

    tokenizer = load_tokenizer(tokenizer_folder)
    torch.manual_seed(1)
    model = LlamaForSequenceClassification(_llama_config(tokenizer, num_labels=2))
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A session folder holding the tiny artefacts."""
    return tmp_path_factory.mktemp("tiny")


@pytest.fixture(scope="session")
def tiny_tokenizer_path(tiny_root: Path) -> Path:
    return build_tokenizer(tiny_root / "tokenizer")


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_tokenizer_path: Path):
    """A byte-level BPE PreTrainedTokenizerFast (vocab 400, EOS '</s>', pad '<pad>')."""
    return load_tokenizer(tiny_tokenizer_path)


@pytest.fixture(scope="session")
def tiny_causal_lm(tiny_root: Path, tiny_tokenizer_path: Path) -> Path:
    """Folder of a tiny LlamaForCausalLM (2 layers, hidden 64) plus its tokenizer."""
    return build_causal_lm(tiny_root / "causal-lm", tiny_tokenizer_path)


@pytest.fixture(scope="session")
def tiny_classifier(tiny_root: Path, tiny_tokenizer_path: Path) -> Path:
    """Folder of a tiny 2-label LlamaForSequenceClassification plus its tokenizer."""
    return build_classifier(tiny_root / "classifier", tiny_tokenizer_path)
