"""Pixels and code grids in and out of PNG files: the only place sampling touches image files."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from showo.errors import ShowoError


def load_image(path: str | Path, mode: str = "RGB") -> Image.Image:
    """Open an image file fully (so a truncated file fails here, not later) and convert it to `mode`."""
    path = Path(path)
    if not path.is_file():
        raise ShowoError(f"image not found: {path}")
    try:
        with Image.open(path) as image:
            image.load()
            return image.convert(mode)
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise ShowoError(f"cannot read image {path}: {err}") from None


def to_pil(pixels: torch.Tensor) -> list[Image.Image]:
    """[B,3,H,W] in [-1,1] -> PIL images, mapped as clamp((x+1)/2, 0, 1)*255 like the official demo."""
    scaled = ((pixels.detach().float().cpu() + 1.0) / 2.0).clamp(0.0, 1.0) * 255.0
    arrays = scaled.round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return [Image.fromarray(np.ascontiguousarray(array)) for array in arrays]


def make_grid(images: Sequence[Image.Image], ncol: int | None = None, pad: int = 2) -> Image.Image:
    """Tile images (all the same size) row-major into one picture with `pad` white pixels between them."""
    if not images:
        raise ShowoError("no images to put in a grid")
    width, height = images[0].size
    ncol = ncol or math.ceil(math.sqrt(len(images)))
    nrow = math.ceil(len(images) / ncol)
    sheet = Image.new("RGB", (ncol * width + (ncol - 1) * pad, nrow * height + (nrow - 1) * pad), "white")
    for index, image in enumerate(images):
        row, col = divmod(index, ncol)
        sheet.paste(image.convert("RGB"), (col * (width + pad), row * (height + pad)))
    return sheet


def save_grid(pixels: torch.Tensor, path: str | Path, ncol: int | None = None) -> Path:
    """Write a batch of [-1,1] images as one PNG grid; creates the parent directory."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    make_grid(to_pil(pixels), ncol).save(path, format="PNG")
    return path


@torch.no_grad()
def encode_image(
    image_tokenizer, image: Image.Image, resolution: int
) -> tuple[torch.Tensor, tuple[int, int]]:
    """Image -> raw codes [1, h*w] with the system's one transform; returns the code grid (h, w) too."""
    side = resolution // image_tokenizer.downsample_factor
    return encode_images(image_tokenizer, [image], resolution), (side, side)


@torch.no_grad()
def encode_images(
    image_tokenizer, images: Sequence[Image.Image], resolution: int, batch_size: int = 16
) -> torch.Tensor:
    """Images -> raw codes [n, h*w] with the system's one transform, `batch_size` images per encode."""
    from showo.tokenizer.transform import showo_transform

    device = next(image_tokenizer.parameters()).device
    out = []
    for start in range(0, len(images), batch_size):
        pixels = torch.stack(
            [showo_transform(im, resolution)[0] for im in images[start : start + batch_size]]
        )
        out.append(image_tokenizer.encode(pixels.to(device)))
    return torch.cat(out)


@torch.no_grad()
def decode_codes(image_tokenizer, codes: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Raw codes [B, h*w] (clamped into the codebook, as the official demo does) -> pixels [B,3,H,W]."""
    codes = codes.clamp(0, image_tokenizer.codebook_size - 1)
    device = next(image_tokenizer.parameters()).device
    return image_tokenizer.decode(codes.to(device), grid=grid)
