"""A tiny Phi (qk_layernorm) and a byte-level BPE tokenizer saved as a real model directory.

Tests and the demo load it exactly like a downloaded Phi-1.5 (``AutoTokenizer`` / ``PhiForCausalLM``
``from_pretrained``), so no code path is special-cased for them. The tokenizer mirrors Phi's conventions:
byte-level BPE, ``<|endoftext|>`` as bos = eos = unk, no special tokens added by the tokenizer itself. The
embedding has more rows than the tokenizer (``pad_vocab_to`` multiple), like Phi-1.5's 51,200 rows for a
50,295-token tokenizer, so the resize-keeps-old-rows path is exercised.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PhiConfig, PhiForCausalLM, PreTrainedTokenizerFast

from showo.errors import ShowoError

ENDOFTEXT = "<|endoftext|>"


def train_tokenizer(texts: Iterable[str], vocab_size: int = 1024) -> PreTrainedTokenizerFast:
    """Byte-level BPE trained in memory, wrapped for transformers."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[ENDOFTEXT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=ENDOFTEXT, eos_token=ENDOFTEXT, unk_token=ENDOFTEXT
    )


def build_tiny_llm(
    out_dir: str | Path,
    texts: Iterable[str],
    vocab_size: int = 1024,
    hidden_size: int = 64,
    num_hidden_layers: int = 2,
    num_attention_heads: int = 4,
    intermediate_size: int | None = None,
    max_position_embeddings: int = 2048,
    pad_vocab_to: int = 64,
    seed: int = 0,
) -> Path:
    """Train the tokenizer on ``texts``, build a randomly initialised tiny Phi, save both to ``out_dir``."""
    if hidden_size % num_attention_heads:
        raise ShowoError(f"hidden_size {hidden_size} is not divisible by {num_attention_heads} heads")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = train_tokenizer(texts, vocab_size)
    rows = -(-len(tokenizer) // pad_vocab_to) * pad_vocab_to
    config = PhiConfig(
        vocab_size=rows,
        hidden_size=hidden_size,
        intermediate_size=intermediate_size or 4 * hidden_size,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=num_attention_heads,
        max_position_embeddings=max_position_embeddings,
        partial_rotary_factor=0.5,
        qk_layernorm=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=False,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = PhiForCausalLM(config)
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    return out
