"""Official Show-o checkpoints (the showlab/show-o release layout; docs/official-differences.md#checkpoints).

An official directory holds ``config.json`` with ``codebook_size``, ``num_vq_tokens``, ``llm_model_path``,
``llm_vocab_size`` and ``vocab_size`` (``mask_token_id`` optional), and the weights as
``pytorch_model.safetensors`` or ``pytorch_model.bin`` with every key prefixed by ``showo.`` (the wrapped
``PhiForCausalLM``). The Phi config and the text tokenizer come from the directory ``llm_model_path`` names
(a hub id like ``microsoft/phi-1_5`` must be available locally: pass ``llm_path``). ``max_text_len`` is a
training setting not stored in the checkpoint (128 in the official pretraining configs).

Read as data only: config.json must be a JSON object with integer sizes in range, the LLM config is bounded
before anything is allocated, `.bin` weights are read weights-only, and an LLM directory without tokenizer
files is named as such (transformers would silently build an empty tokenizer from it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from transformers import PhiForCausalLM

from showo.errors import ShowoError
from showo.model import (
    TOKENIZER_FILES,
    ShowO,
    ShowOConfig,
    _bounded_int,
    _load_tokenizer,
    check_llm_config,
    check_weights_count,
    check_weights_size,
    load_llm_state,
    phi_config,
    read_phi_config,
)
from showo.safeio import load_weights_only, read_json_object, read_safetensors
from showo.vocab import UnifiedVocab

OFFICIAL_FIELDS = ("codebook_size", "num_vq_tokens", "llm_model_path", "llm_vocab_size", "vocab_size")
WEIGHT_NAMES = ("pytorch_model.safetensors", "pytorch_model.bin")
PREFIX = "showo."
DEFAULT_MAX_TEXT_LEN = 128


def is_official_config(data: dict[str, Any]) -> bool:
    return data.get("model_type") != "showo" and all(k in data for k in OFFICIAL_FIELDS)


def is_official_dir(path: str | Path) -> bool:
    cfg = Path(path) / "config.json"
    return cfg.is_file() and is_official_config(read_json_object(cfg, "Show-o config"))


def read_official_weights(path: Path) -> tuple[dict[str, torch.Tensor], Path]:
    """The raw state dict and its file (safetensors preferred; .bin read with ``weights_only=True``)."""
    for name in WEIGHT_NAMES:
        f = path / name
        if f.is_file():
            state = read_safetensors(f) if f.suffix == ".safetensors" else load_weights_only(f, "weights")
            if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
                raise ShowoError(f"{f} does not hold a state dict of tensors")
            return state, f
    raise ShowoError(f"official Show-o directory {path} has none of {', '.join(WEIGHT_NAMES)}")


def official_to_llm_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Strip the ``showo.`` prefix; anything else (e.g. the CLIP ``mm_projector``) is unsupported."""
    other = [k for k in state if not k.startswith(PREFIX)]
    if other:
        raise ShowoError(f"official checkpoint has keys outside '{PREFIX}' (CLIP-ViT variant?): {other[:3]}")
    return {k[len(PREFIX) :]: v for k, v in state.items()}


def resolve_llm_dir(path: Path, named: str, llm_path: str | Path | None) -> Path:
    candidates = [Path(llm_path)] if llm_path is not None else [Path(named), path / named]
    for c in candidates:
        if (c / "config.json").is_file():
            return c
    raise ShowoError(
        f"official checkpoint names LLM {str(llm_path or named)!r}, which is not a local directory with config.json"
        " (pass llm_path= a local Phi directory)"
    )


def load_official(
    path: str | Path,
    attn_implementation: str = "sdpa",
    llm_path: str | Path | None = None,
    max_text_len: int | None = None,
) -> ShowO:
    """Build our ShowO from an official directory with strict key matching."""
    path = Path(path)
    source = f"{path}/config.json"
    data = read_json_object(path / "config.json", "Show-o config")
    if data.get("w_clip_vit"):
        raise ShowoError(f"{path}: the CLIP-ViT variant (w_clip_vit) is not supported")
    codebook_size = _bounded_int(data, "codebook_size", 2**16, source)
    num_image_tokens = _bounded_int(data, "num_vq_tokens", 2**20, source)
    for key in ("llm_vocab_size", "vocab_size", "mask_token_id"):
        if key in data:
            _bounded_int(data, key, 2**22, source)
    if not isinstance(data["llm_model_path"], str):
        raise ShowoError(f"{source}: llm_model_path must be a string")
    llm_dir = resolve_llm_dir(path, data["llm_model_path"], llm_path)
    if not any((llm_dir / name).is_file() for name in TOKENIZER_FILES):
        raise ShowoError(
            f"official checkpoint {path}: its LLM directory {llm_dir} has no tokenizer files"
            f" ({', '.join(TOKENIZER_FILES)}); point llm_model_path in {source} (or llm_path=) at a local Phi"
            " directory that has them, e.g. a download of microsoft/phi-1_5"
        )
    cfg = phi_config(read_phi_config(llm_dir), attn_implementation, f"{llm_dir}/config.json")
    tokenizer = _load_tokenizer(llm_dir)
    vocab = UnifiedVocab.extend_tokenizer(tokenizer, codebook_size)
    expected = {"llm_vocab_size": vocab.text_size, "vocab_size": vocab.size, "mask_token_id": vocab.mask_id}
    for key, ours in expected.items():
        if key in data and data[key] != ours:
            raise ShowoError(
                f"{path}: official {key} is {data[key]} but the tokenizer in {llm_dir} gives {ours}"
            )
    cfg.vocab_size = vocab.size
    check_llm_config(cfg, f"{llm_dir}/config.json with the Show-o vocabulary")
    if (path / WEIGHT_NAMES[0]).is_file():
        check_weights_size(cfg, path / WEIGHT_NAMES[0])
    state, weights = read_official_weights(path)
    check_weights_count(cfg, sum(v.numel() for v in state.values()), str(weights))
    llm = PhiForCausalLM(cfg)
    load_llm_state(llm, official_to_llm_state(state), str(weights))
    config = ShowOConfig(
        codebook_size=vocab.codebook_size,
        num_image_tokens=num_image_tokens,
        max_text_len=max_text_len if max_text_len is not None else DEFAULT_MAX_TEXT_LEN,
        llm=llm.config.to_dict(),
    )
    return ShowO(llm, vocab, config, tokenizer)
