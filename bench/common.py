"""What the model benchmarks share: a tiny Phi-style LLM on CPython's pydoc text, sized from the command line."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from showo.tiny_llm import build_tiny_llm


def corpus(extra_texts: Sequence[str]) -> list[str]:
    """Forty pydoc topics plus the benchmark's own texts, repeated so the BPE learns their words."""
    from pydoc_data.topics import topics

    return [topics[k] for k in sorted(topics)[:40]] + list(extra_texts) * 20


def bench_llm(out_dir: str | Path, extra_texts: Sequence[str], hidden: int, layers: int) -> Path:
    """A tiny LLM directory (head dim 32) that `ShowO.build` loads like any pretrained one."""
    return build_tiny_llm(
        out_dir,
        corpus(extra_texts),
        vocab_size=1000,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=hidden // 32,
    )
