"""Build a tiny Llama and a byte-level BPE tokenizer offline, for smoke tests and benchmarks.

Nothing is downloaded: the tokenizer is trained on the given text with ``tokenizers``, the
model is built from a ``LlamaConfig`` with random weights. Both are saved with
``save_pretrained`` so they load like any Hugging Face checkpoint.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path


def build_tiny_model(
    dest: str | Path,
    texts: Iterable[str],
    *,
    vocab_size: int = 512,
    hidden_size: int = 64,
    layers: int = 2,
    heads: int = 4,
    max_positions: int = 512,
    seed: int = 0,
) -> Path:
    """Train a BPE tokenizer on ``texts`` and save it with a random tiny Llama in ``dest``.

    Args:
        dest: the folder to write (created).
        texts: the text the tokenizer learns its merges from.
        vocab_size: tokenizer vocabulary (the model's embedding size follows it).
        hidden_size, layers, heads, max_positions: the model's shape.
        seed: seeds the weight initialisation.

    Returns:
        The folder.
    """
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<s>", "</s>", "<pad>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(list(texts), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>"
    )
    fast.model_max_length = max_positions
    fast.save_pretrained(dest)
    config = LlamaConfig(
        vocab_size=len(fast),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 4,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=max_positions,
        bos_token_id=fast.bos_token_id,
        eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.save_pretrained(dest)
    return dest
