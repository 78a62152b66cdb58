"""Checkpoint -> the `ShowO.save_pretrained` directory users load for inference, image tokenizer included.

DeepSpeed checkpoint directories are consolidated with DeepSpeed's own zero_to_fp32 reader, so ZeRO-2 and
ZeRO-3 shards from any number of ranks become one fp32 state dict.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from transformers import AutoTokenizer, PhiForCausalLM

from showo.errors import ShowoError
from showo.model import ShowO, ShowOConfig, load_llm_state, phi_config
from showo.training.checkpoint import CHECKPOINT_DIR, list_checkpoints, read_llm_weights, read_metadata
from showo.training.module import METADATA_KEY
from showo.vocab import UnifiedVocab

IMAGE_TOKENIZER_DIR = "image_tokenizer"


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint path as given, or a run directory's last complete checkpoint."""
    p = Path(path)
    if not p.exists():
        raise ShowoError(f"checkpoint {p} does not exist")
    if p.is_dir() and (p / CHECKPOINT_DIR).is_dir():
        found = list_checkpoints(p)
        if not found:
            raise ShowoError(f"run {p} has no complete checkpoint")
        return found[-1]
    return p


def load_checkpoint_model(path: str | Path) -> tuple[ShowO, dict]:
    """The ShowO a checkpoint holds (fp32), and the checkpoint's non-weight entries."""
    ckpt = resolve_checkpoint(path)
    meta = read_metadata(ckpt)
    showo_meta = meta.get(METADATA_KEY)
    if showo_meta is None:
        raise ShowoError(f"{ckpt} was not written by showo training (no Show-o metadata)")
    with tempfile.TemporaryDirectory() as tmp:
        for name, text in showo_meta["tokenizer_files"].items():
            (Path(tmp) / name).write_text(text)
        tokenizer = AutoTokenizer.from_pretrained(tmp)
    config = ShowOConfig.from_dict(showo_meta["model_config"])
    llm = PhiForCausalLM(phi_config(config.llm))
    load_llm_state(llm, read_llm_weights(ckpt), str(ckpt))
    return ShowO(llm, UnifiedVocab.from_dict(showo_meta["vocab"]), config, tokenizer), meta


def export(ckpt: str | Path, out: str | Path, image_tokenizer: str | Path | None = None) -> Path:
    """Write `out/` (config, safetensors, tokenizer, vocab) and `out/image_tokenizer/`.

    The image tokenizer defaults to the one the checkpoint's recipe names.
    """
    from showo.tokenizer.model import load_image_tokenizer

    model, meta = load_checkpoint_model(ckpt)
    if image_tokenizer is None:
        image_tokenizer = (
            meta.get("hyper_parameters", {}).get("recipe", {}).get("model", {}).get("image_tokenizer")
        )
        if image_tokenizer is None:
            raise ShowoError(f"{ckpt} names no image tokenizer: pass --image-tokenizer")
    out = Path(out)
    model.save_pretrained(out)
    load_image_tokenizer(image_tokenizer).save_pretrained(out / IMAGE_TOKENIZER_DIR)
    return out
