"""What the inference commands and the eval suites load: a Show-o checkpoint directory, its prompter, its
image tokenizer and its image objective (whose sampler draws its images).

The image tokenizer is found, in order: the explicit path (`--image-tokenizer`), `<ckpt>/image_tokenizer/`
(written by `showo export`), or an `image_tokenizer` path recorded in `<ckpt>/config.json`, relative to the
checkpoint directory and inside it (a path taken from a file is never absolute and never climbs out with `..`).
A checkpoint whose objective trains on continuous latents (`image_format` "latents") decodes with the VAE
its objective names instead (`<ckpt>/vae/` of an export, else the recorded directory), wrapped as a
`latent_images.LatentImages` in the image tokenizer's place.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from showo.device import resolve_device
from showo.errors import ShowoError
from showo.safeio import loads_json, read_json_object

IMAGE_TOKENIZER_DIR = "image_tokenizer"


@dataclass
class Pipeline:
    model: Any | None
    prompter: Any | None
    image_tokenizer: Any | None
    device: torch.device

    @property
    def grid(self) -> tuple[int, int]:
        """The model's (square) code grid; (0, 0) without a model."""
        side = math.isqrt(self.model.config.num_image_tokens) if self.model is not None else 0
        return side, side

    @property
    def resolution(self) -> int:
        """Pixel side of the model grid under the image tokenizer (0 without a model)."""
        if self.image_tokenizer is None:
            raise ShowoError("no image tokenizer loaded")
        return self.grid[0] * self.image_tokenizer.downsample_factor

    @property
    def objective(self) -> Any:
        """The checkpoint's image objective (`showo.objectives`); its sampler draws this model's images."""
        return self.model.objective

    def generator(self, seed: int) -> torch.Generator:
        return torch.Generator(device=self.device).manual_seed(seed)

    def decode_images(self, images: torch.Tensor) -> torch.Tensor:
        """Sampled images (what the objective's `generate` or `sample_frame` gives, stacked: raw codes, or
        scaled latents) -> pixels [B,3,H,W] in [-1,1], by the checkpoint's image tokenizer or VAE."""
        from showo.sampling.images import decode_codes
        from showo.sampling.latent_images import LatentImages

        if self.image_tokenizer is None:
            raise ShowoError("no image tokenizer loaded")
        if isinstance(self.image_tokenizer, LatentImages):
            return self.image_tokenizer.decode(images)
        return decode_codes(self.image_tokenizer, images, self.grid)

    def encode_images(self, pictures: Any, batch_size: int = 16) -> torch.Tensor:
        """PIL images -> what the model reads at image positions: unified image ids [n, N], or scaled
        latents [n, C, h, w] (fed as clean image embeddings, `understand.decode`)."""
        from showo.sampling.images import encode_images

        if self.image_tokenizer is None:
            raise ShowoError("no image tokenizer loaded")
        out = encode_images(self.image_tokenizer, list(pictures), self.resolution, batch_size)
        return out if out.is_floating_point() else self.model.vocab.codes_to_ids(out)


def find_image_tokenizer(ckpt: Path, explicit: str | Path | None) -> Path:
    if explicit is not None:
        return Path(explicit)
    if (ckpt / IMAGE_TOKENIZER_DIR).is_dir():
        return ckpt / IMAGE_TOKENIZER_DIR
    try:
        data = loads_json((ckpt / "config.json").read_text())
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


def checkpoint_objective(ckpt: str | Path) -> Any:
    """The image objective a checkpoint directory records, read from its config.json before any weight
    (none recorded, or an official checkpoint: MTP), so sampler settings are checked before loading."""
    from showo import objectives

    config = Path(ckpt) / "config.json"
    data = read_json_object(config, "Show-o config") if config.is_file() else {}
    return objectives.recorded(data.get("objective"), f"{config} objective")


def load_pipeline(
    ckpt: str | Path,
    image_tokenizer: str | Path | None = None,
    device: str | None = None,
    need_image_tokenizer: bool = True,
    need_model: bool = True,
) -> Pipeline:
    """Load the model (eval mode, on `device`), its prompter and, when needed, the matching image tokenizer.

    Without `need_model`, `ckpt` may be a bare image tokenizer directory (the tokenizer eval suite).
    """
    from showo.model import ShowO

    ckpt = Path(ckpt)
    target = resolve_device(device)
    if not need_model:
        if not ckpt.exists():
            raise ShowoError(f"checkpoint not found: {ckpt}")
        from showo.tokenizer import load_image_tokenizer

        path = image_tokenizer or (
            ckpt / IMAGE_TOKENIZER_DIR if (ckpt / IMAGE_TOKENIZER_DIR).is_dir() else ckpt
        )
        return Pipeline(None, None, load_image_tokenizer(path).to(target).eval(), target)
    if not ckpt.is_dir():
        raise ShowoError(f"checkpoint directory not found: {ckpt}")
    latents = checkpoint_objective(ckpt).image_format == "latents"
    if latents and image_tokenizer is not None:
        raise ShowoError(
            f"{ckpt} decodes images with its objective's VAE (<ckpt>/vae or objective.vae); "
            "--image-tokenizer does not apply"
        )
    tokenizer_path = None
    if need_image_tokenizer and not latents:
        tokenizer_path = find_image_tokenizer(ckpt, image_tokenizer)
    model = ShowO.from_pretrained(ckpt).to(target).eval()
    side = math.isqrt(model.config.num_image_tokens)
    if side * side != model.config.num_image_tokens:
        raise ShowoError(f"{ckpt}: {model.config.num_image_tokens} image tokens is not a square grid")
    tokenizer = None
    if need_image_tokenizer and latents:
        from showo.sampling.latent_images import LatentImages

        vae = model.objective.load_vae(ckpt)
        tokenizer = LatentImages(vae, model.objective, model.image_head.patch_size).to(target).eval()
    if tokenizer_path is not None:
        from showo.tokenizer import load_image_tokenizer

        tokenizer = load_image_tokenizer(tokenizer_path).to(target).eval()
        if tokenizer.codebook_size != model.config.codebook_size:
            raise ShowoError(
                f"image tokenizer has {tokenizer.codebook_size} codes but the model expects {model.config.codebook_size}"
            )
    return Pipeline(model, model.prompter(), tokenizer, target)
