"""The demo's base model and the synthetic source's generator: tiny Llamas made here.

``prepare_base_model`` trains a byte-level BPE tokenizer on general and domain text and
pretrains a ~1.5M-parameter ``LlamaForCausalLM`` on general text only, so the base model
knows everyday facts and none of the fictional drugs. ``prepare_generator_model`` trains a
second tiny Llama to turn fact cards into prose notes; the synthetic source prompts it.

Both are cached: a folder with a ``COMPLETE`` marker is reused as is, and the folder is
written under a temporary name and renamed only once complete.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import random
import shutil
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from examples.domain import kb as kbm

MARKER = "COMPLETE"
SEQ_LEN = 128


@dataclass(frozen=True, slots=True)
class TinyLlamaShape:
    """Model and tokenizer sizes (small enough for a CPU anneal in seconds)."""

    vocab_size: int = 1536
    hidden_size: int = 128
    intermediate_size: int = 384
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    max_position_embeddings: int = 256


@dataclass(frozen=True, slots=True)
class PretrainRecipe:
    """How long and how hard to pretrain."""

    steps: int = 300
    batch_size: int = 16
    seq_len: int = SEQ_LEN
    lr: float = 2e-3
    warmup_steps: int = 30
    seed: int = kbm.DEFAULT_SEED


BASE_RECIPE = PretrainRecipe()
GENERATOR_RECIPE = PretrainRecipe(steps=150, lr=2e-3)


# Bump when the text generators or the training code change what a seed produces.
MODEL_VERSION = 4


def cache_key(*parts: object) -> str:
    """A short digest of everything that decides a cached folder's content."""
    blob = json.dumps([MODEL_VERSION, *parts], sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _is_complete(folder: Path, key: str) -> bool:
    marker = folder / MARKER
    return marker.exists() and marker.read_text().strip() == key


def train_tokenizer(texts: Iterable[str], vocab_size: int):
    """A byte-level BPE tokenizer wrapped for transformers (bos/eos ``<s>``/``</s>``).

    Args:
        texts: the training texts.
        vocab_size: the target vocabulary size.

    Returns:
        A ``PreTrainedTokenizerFast``.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    # Drug-name stems are split off as their own pieces (a morpheme-aware tokenizer), so a
    # name is <prefix><stem> and the stem's meaning can transfer between names.
    stems = "|".join(rf"{s}\b" for s in sorted(kbm.STEMS, key=len, reverse=True))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(stems), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<pad>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>"
    )


def pack(token_stream: Iterator[list[int]], seq_len: int, n_seqs: int):
    """Pack documents (each ending in eos) into ``n_seqs`` rows of ``seq_len`` tokens."""
    import torch

    need = seq_len * n_seqs
    flat: list[int] = []
    for ids in token_stream:
        flat.extend(ids)
        if len(flat) >= need:
            break
    return torch.tensor(flat[:need], dtype=torch.long).view(n_seqs, seq_len)


def tokenize_docs(tokenizer, docs: Iterable[str], chunk: int = 256) -> Iterator[list[int]]:
    """Token ids per document, each followed by eos (batched for speed)."""
    eos = tokenizer.eos_token_id
    it = iter(docs)
    while batch := list(itertools.islice(it, chunk)):
        for ids in tokenizer(batch)["input_ids"]:
            yield [*ids, eos]


def new_model(shape: TinyLlamaShape, tokenizer, seed: int):
    """A freshly initialised tiny ``LlamaForCausalLM``."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=shape.hidden_size,
        intermediate_size=shape.intermediate_size,
        num_hidden_layers=shape.num_hidden_layers,
        num_attention_heads=shape.num_attention_heads,
        num_key_value_heads=shape.num_attention_heads,
        max_position_embeddings=shape.max_position_embeddings,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        # Untied: the drug names are tokens the base model never saw. With tied weights the
        # output softmax pushes all unseen tokens' embeddings the same way during pretraining,
        # so the names start the anneal indistinguishable; untied, their input embeddings
        # keep distinct random values and an anneal can attach facts to them.
        tie_word_embeddings=False,
    )
    return LlamaForCausalLM(config)


def train_lm(model, data, *, lr: float, warmup_steps: int, batch_size: int, seed: int) -> float:
    """Train on packed rows for one pass: AdamW, linear warmup then linear decay to zero.

    Args:
        model: the causal LM (trained in place).
        data: a (rows, seq_len) LongTensor.
        lr: peak learning rate.
        warmup_steps: linear warmup steps (0: start at the peak, as an anneal does).
        batch_size: rows per step.
        seed: the data-order seed.

    Returns:
        The mean loss over the last tenth of the steps.
    """
    import torch

    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(data.shape[0], generator=gen)
    steps = max(1, data.shape[0] // batch_size)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.01)

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        return max(0.0, (steps - step) / max(1, steps - warmup_steps))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    model.train()
    tail: list[float] = []
    for step in range(steps):
        batch = data[order[step * batch_size : (step + 1) * batch_size]]
        loss = model(input_ids=batch, labels=batch).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step >= steps - max(1, steps // 10):
            tail.append(float(loss.detach()))
    model.eval()
    return sum(tail) / len(tail)


def _save(model, tokenizer, dest: Path, info: dict, key: str) -> Path:
    """Write model + tokenizer under a temporary name, then rename (never half-written)."""
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    (tmp / "annealplan_demo.json").write_text(json.dumps(info, indent=2, sort_keys=True))
    (tmp / MARKER).write_text(key + "\n")
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    return dest


def _tokenizer_corpus(seed: int) -> list[str]:
    """General, web, textbook, card and pool text: every word the demo will ever show."""
    kb = kbm.make_kb(seed)
    rng = random.Random(seed + 10)
    texts = [kbm.general_document(rng) for _ in range(3000)]
    texts += [kbm.web_document(kb, rng) for _ in range(1000)]
    texts += kbm.textbook_documents(kb, rng, editions=1)
    texts += [kbm.generator_training_text(kb, rng) for _ in range(300)]
    texts += [kbm.pool_document(kb, rng)[0] for _ in range(1000)]
    return texts


def prepare_base_model(
    cache_dir: Path,
    *,
    seed: int = kbm.DEFAULT_SEED,
    shape: TinyLlamaShape = TinyLlamaShape(),
    recipe: PretrainRecipe = BASE_RECIPE,
    name: str = "base-model",
) -> Path:
    """Pretrain (once) the demo's base model and return its folder.

    The tokenizer sees general and domain text; the model is pretrained on general text
    only. A folder with the completion marker is returned at once.

    Args:
        cache_dir: where the folder ``<name>`` goes (e.g. ``.annealplan/cache``).
        seed: the seed of the data, the initialisation and the data order.
        shape: the model and tokenizer sizes.
        recipe: how long to pretrain (tests pass a much shorter one and another name).
        name: the folder name.

    Returns:
        The folder holding ``config.json``, the weights and the tokenizer files.
    """
    import torch

    dest = Path(cache_dir) / name
    corpus = _tokenizer_corpus(seed)
    # The corpus digest stands for the text generators: when they change, so does the key.
    corpus_digest = hashlib.sha256("\n".join(corpus).encode()).hexdigest()
    key = cache_key("base", seed, asdict(shape), asdict(recipe), corpus_digest)
    if _is_complete(dest, key):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    torch.manual_seed(seed)
    tokenizer = train_tokenizer(corpus, shape.vocab_size)
    model = new_model(shape, tokenizer, seed)
    rng = random.Random(f"pretrain:{seed}")
    docs = (kbm.general_document(rng) for _ in itertools.count())
    info = {"role": "base", "seed": seed, "shape": asdict(shape)}
    return _train_and_save(model, tokenizer, docs, recipe, seed, dest, key, info, t0)


def prepare_generator_model(
    cache_dir: Path,
    *,
    seed: int = kbm.DEFAULT_SEED,
    recipe: PretrainRecipe = GENERATOR_RECIPE,
    name: str = "generator-model",
    base_name: str = "base-model",
    base_recipe: PretrainRecipe = BASE_RECIPE,
) -> Path:
    """Train (once) the synthetic source's generator: base model → card-to-note writer.

    It starts from the base model (same tokenizer) and learns from pairs
    ``Card: <facts>\\nNote: <prose>`` to rewrite a card as prose. It copies facts from the
    prompt imperfectly, as a small generator does.

    Args:
        cache_dir: where both folders live; the base model is prepared first if needed.
        seed: the seed.
        recipe: how long to train.
        name: the folder name.
        base_name: the base model's folder name.
        base_recipe: the base model's recipe (so a shortened base is found, not retrained).

    Returns:
        The generator's folder.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = prepare_base_model(cache_dir, seed=seed, name=base_name, recipe=base_recipe)
    dest = Path(cache_dir) / name
    key = cache_key("generator", seed, asdict(recipe), (base / MARKER).read_text().strip())
    if _is_complete(dest, key):
        return dest
    t0 = time.perf_counter()
    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    kb = kbm.make_kb(seed)
    rng = random.Random(f"generator:{seed}")
    docs = (kbm.generator_training_text(kb, rng) for _ in itertools.count())
    info = {"role": "generator", "seed": seed}
    return _train_and_save(model, tokenizer, docs, recipe, seed, dest, key, info, t0)


def _train_and_save(model, tokenizer, docs, recipe, seed, dest, key, info, t0) -> Path:
    """Train ``model`` on ``docs`` with ``recipe`` and save it, with what was done, as ``dest``."""
    data = pack(tokenize_docs(tokenizer, docs), recipe.seq_len, recipe.steps * recipe.batch_size)
    loss = train_lm(
        model,
        data,
        lr=recipe.lr,
        warmup_steps=recipe.warmup_steps,
        batch_size=recipe.batch_size,
        seed=seed,
    )
    info = {
        **info,
        "recipe": asdict(recipe),
        "params": sum(p.numel() for p in model.parameters()),
        "tokens": int(data.numel()),
        "final_loss": loss,
        "seconds": round(time.perf_counter() - t0, 2),
    }
    return _save(model, tokenizer, dest, info, key)
