"""Checkpoint -> the `ShowO.save_pretrained` directory users load for inference, image tokenizer included.

The checkpoint is verified first (`showo.training.checkpoint.verify_checkpoint`); a run directory means its
newest checkpoint that passes. Everything is read weights-only: DeepSpeed directories (ZeRO 0-3, any number
of ranks) are consolidated to one fp32 state dict by `showo.training.zero`, never by DeepSpeed's unpickling
reader. The tokenizer files stored in the checkpoint must carry plain file names and hold text.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from transformers import AutoTokenizer, PhiForCausalLM

from showo.errors import ShowoError
from showo.model import ShowO, ShowOConfig, check_weights_count, phi_config
from showo.safeio import first_line, plain_file_name
from showo.training.checkpoint import (
    CHECKPOINT_DIR,
    checked,
    list_checkpoints,
    newest_good,
    read_llm_weights,
    read_metadata,
)
from showo.training.module import METADATA_KEY
from showo.vocab import UnifiedVocab

IMAGE_TOKENIZER_DIR = "image_tokenizer"


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint path as given, or a run directory's newest checkpoint that passes verification."""
    p = Path(path)
    if not p.exists():
        raise ShowoError(f"checkpoint {p} does not exist")
    if p.is_dir() and (p / CHECKPOINT_DIR).is_dir():
        found = newest_good(list_checkpoints(p), "export")
        if found is None:
            raise ShowoError(f"run {p} has no complete checkpoint")
        return found
    return checked(p, "export")


def showo_metadata(meta: dict, ckpt: Path) -> dict:
    """The checkpoint's Show-o entry, its fields type-checked (a stranger's file may hold anything)."""
    showo_meta = meta.get(METADATA_KEY)
    if showo_meta is None:
        raise ShowoError(f"{ckpt} was not written by showo training (no Show-o metadata)")
    fields = {"vocab": dict, "model_config": dict, "tokenizer_files": dict}
    if not isinstance(showo_meta, dict) or any(
        not isinstance(showo_meta.get(k), t) for k, t in fields.items()
    ):
        raise ShowoError(f"{ckpt}: malformed Show-o metadata (needs vocab, model_config and tokenizer_files)")
    return showo_meta


def write_tokenizer_files(files: dict, directory: Path, ckpt: Path) -> None:
    """Write the stored tokenizer files into `directory`; every name must be a plain file name."""
    for name, text in files.items():
        plain_file_name(name, f"{ckpt}: tokenizer file name")
        if not isinstance(text, str):
            raise ShowoError(f"{ckpt}: tokenizer file {name} does not hold text")
    for name, text in files.items():
        (directory / name).write_text(text)


def load_checkpoint_model(path: str | Path) -> tuple[ShowO, dict]:
    """The ShowO a checkpoint holds (fp32), and the checkpoint's non-weight entries."""
    ckpt = resolve_checkpoint(path)
    meta = read_metadata(ckpt)
    showo_meta = showo_metadata(meta, ckpt)
    config = ShowOConfig.from_dict(showo_meta["model_config"], f"{ckpt} model_config")
    llm_config = phi_config(config.llm, source=f"{ckpt} model_config.llm")
    with tempfile.TemporaryDirectory() as tmp:
        write_tokenizer_files(showo_meta["tokenizer_files"], Path(tmp), ckpt)
        try:
            tokenizer = AutoTokenizer.from_pretrained(tmp, trust_remote_code=False)
        except (OSError, ValueError, TypeError) as err:
            raise ShowoError(f"{ckpt}: cannot load its stored text tokenizer: {first_line(err)}") from None
    vocab = UnifiedVocab.from_dict(showo_meta["vocab"])
    weights = read_llm_weights(ckpt)
    check_weights_count(llm_config, sum(v.numel() for v in weights.values()), str(ckpt))
    model = ShowO(PhiForCausalLM(llm_config), vocab, config, tokenizer)
    model.load_state(weights, str(ckpt))
    return model, meta


def export(ckpt: str | Path, out: str | Path, image_tokenizer: str | Path | None = None) -> Path:
    """Write `out/` (config, safetensors, tokenizer, vocab) and the image decoder of the objective's format:
    `out/image_tokenizer/` for image codes, `out/vae/` for latents (`ImageObjective.save_image_decoder`).

    The image tokenizer defaults to the one the checkpoint's recipe names; the VAE is the objective's.
    """
    from showo.tokenizer.model import load_image_tokenizer

    model, meta = load_checkpoint_model(ckpt)
    out = Path(out)
    if model.objective.save_image_decoder(out):
        model.save_pretrained(out)
        return out
    if image_tokenizer is None:
        image_tokenizer = meta
        for key in ("hyper_parameters", "recipe", "model", "image_tokenizer"):
            image_tokenizer = image_tokenizer.get(key) if isinstance(image_tokenizer, dict) else None
        if not isinstance(image_tokenizer, str):
            raise ShowoError(f"{ckpt} names no image tokenizer: pass --image-tokenizer")
    model.save_pretrained(out)
    load_image_tokenizer(image_tokenizer).save_pretrained(out / IMAGE_TOKENIZER_DIR)
    return out
