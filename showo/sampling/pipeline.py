"""What the inference commands load: a Show-o checkpoint directory, its prompter and its image tokenizer.

The image tokenizer is found, in order: the explicit path (`--image-tokenizer`), `<ckpt>/image_tokenizer/`
(written by `showo export`), or an `image_tokenizer` path recorded in `<ckpt>/config.json`, relative to the
checkpoint directory and inside it (a path taken from a file is never absolute and never climbs out with `..`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from showo.device import resolve_device
from showo.errors import ShowoError

IMAGE_TOKENIZER_DIR = "image_tokenizer"


@dataclass
class Pipeline:
    model: Any
    prompter: Any
    image_tokenizer: Any | None
    device: torch.device

    @property
    def grid(self) -> tuple[int, int]:
        """The model's (square) code grid."""
        side = math.isqrt(self.model.config.num_image_tokens)
        return side, side

    @property
    def resolution(self) -> int:
        """Pixel side of the model grid under the image tokenizer."""
        if self.image_tokenizer is None:
            raise ShowoError("no image tokenizer loaded")
        return self.grid[0] * self.image_tokenizer.downsample_factor

    def generator(self, seed: int) -> torch.Generator:
        return torch.Generator(device=self.device).manual_seed(seed)


def find_image_tokenizer(ckpt: Path, explicit: str | Path | None) -> Path:
    if explicit is not None:
        return Path(explicit)
    if (ckpt / IMAGE_TOKENIZER_DIR).is_dir():
        return ckpt / IMAGE_TOKENIZER_DIR
    try:
        data = json.loads((ckpt / "config.json").read_text())
    except (OSError, ValueError):
        data = None
    recorded = data.get(IMAGE_TOKENIZER_DIR) if isinstance(data, dict) else None
    if isinstance(recorded, str) and recorded:
        path = Path(recorded)
        if path.is_absolute() or ".." in path.parts:
            raise ShowoError(
                f"{ckpt}/config.json records image_tokenizer {recorded[:80]!r} outside the checkpoint directory:"
                " pass --image-tokenizer DIR"
            )
        return ckpt / path
    raise ShowoError(f"{ckpt} has no {IMAGE_TOKENIZER_DIR}/ directory: pass --image-tokenizer DIR")


def load_pipeline(
    ckpt: str | Path,
    image_tokenizer: str | Path | None = None,
    device: str | None = None,
    need_image_tokenizer: bool = True,
) -> Pipeline:
    """Load the model (eval mode, on `device`), its prompter and, when needed, the matching image tokenizer."""
    from showo.model import ShowO

    ckpt = Path(ckpt)
    if not ckpt.is_dir():
        raise ShowoError(f"checkpoint directory not found: {ckpt}")
    target = resolve_device(device)
    model = ShowO.from_pretrained(ckpt).to(target).eval()
    tokenizer = None
    if need_image_tokenizer:
        from showo.tokenizer import load_image_tokenizer

        tokenizer = load_image_tokenizer(find_image_tokenizer(ckpt, image_tokenizer)).to(target).eval()
        if tokenizer.codebook_size != model.config.codebook_size:
            raise ShowoError(
                f"image tokenizer has {tokenizer.codebook_size} codes but the model expects {model.config.codebook_size}"
            )
    return Pipeline(model, model.prompter(), tokenizer, target)
