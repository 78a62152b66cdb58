"""Official Show-o checkpoints (showlab/show-o layout, shared/reference/showo-official.md §1, §4.1).

An official directory holds ``config.json`` with ``codebook_size``, ``num_vq_tokens``, ``llm_model_path``,
``llm_vocab_size`` and ``vocab_size`` (``mask_token_id`` optional), and the weights as
``pytorch_model.safetensors`` or ``pytorch_model.bin`` with every key prefixed by ``showo.`` (the wrapped
``PhiForCausalLM``). The Phi config and the text tokenizer come from the directory ``llm_model_path`` names
(a hub id like ``microsoft/phi-1_5`` must be available locally: pass ``llm_path``). ``max_text_len`` is a
training setting not stored in the checkpoint (128 in the official pretraining configs).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from transformers import PhiConfig, PhiForCausalLM

from showo.errors import ShowoError
from showo.model import ShowO, ShowOConfig, _load_tokenizer, load_llm_state, phi_config
from showo.vocab import UnifiedVocab

OFFICIAL_FIELDS = ("codebook_size", "num_vq_tokens", "llm_model_path", "llm_vocab_size", "vocab_size")
WEIGHT_NAMES = ("pytorch_model.safetensors", "pytorch_model.bin")
PREFIX = "showo."
DEFAULT_MAX_TEXT_LEN = 128


def is_official_config(data: dict[str, Any]) -> bool:
    return data.get("model_type") != "showo" and all(k in data for k in OFFICIAL_FIELDS)


def is_official_dir(path: str | Path) -> bool:
    cfg = Path(path) / "config.json"
    return cfg.is_file() and is_official_config(json.loads(cfg.read_text()))


def read_official_weights(path: Path) -> tuple[dict[str, torch.Tensor], Path]:
    """The raw state dict and its file (safetensors preferred; .bin read with ``weights_only=True``)."""
    for name in WEIGHT_NAMES:
        f = path / name
        if f.is_file():
            if f.suffix == ".safetensors":
                return load_file(str(f)), f
            try:
                return torch.load(str(f), map_location="cpu", weights_only=True), f
            except Exception as exc:  # noqa: BLE001 - any unpickling failure is a bad user file
                raise ShowoError(f"cannot read {f} as plain tensors: {exc}".splitlines()[0]) from None
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
    data = json.loads((path / "config.json").read_text())
    if data.get("w_clip_vit"):
        raise ShowoError(f"{path}: the CLIP-ViT variant (w_clip_vit) is not supported")
    llm_dir = resolve_llm_dir(path, str(data["llm_model_path"]), llm_path)
    tokenizer = _load_tokenizer(llm_dir)
    vocab = UnifiedVocab.extend_tokenizer(tokenizer, int(data["codebook_size"]))
    expected = {"llm_vocab_size": vocab.text_size, "vocab_size": vocab.size, "mask_token_id": vocab.mask_id}
    for key, ours in expected.items():
        if key in data and int(data[key]) != ours:
            raise ShowoError(
                f"{path}: official {key} is {data[key]} but the tokenizer in {llm_dir} gives {ours}"
            )
    cfg = phi_config(PhiConfig.from_pretrained(str(llm_dir)), attn_implementation)
    cfg.vocab_size = vocab.size
    llm = PhiForCausalLM(cfg)
    state, weights = read_official_weights(path)
    load_llm_state(llm, official_to_llm_state(state), str(weights))
    config = ShowOConfig(
        codebook_size=vocab.codebook_size,
        num_image_tokens=int(data["num_vq_tokens"]),
        max_text_len=max_text_len if max_text_len is not None else DEFAULT_MAX_TEXT_LEN,
        llm=llm.config.to_dict(),
    )
    return ShowO(llm, vocab, config, tokenizer)
