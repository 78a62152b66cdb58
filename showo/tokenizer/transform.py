"""The one Show-o image transform: short-side bicubic resize, centre crop, scale to [-1, 1].

Official (`training/utils.py::image_transform`): torchvision Resize(res, BICUBIC) on the short side,
CenterCrop(res), ToTensor, Normalize(0.5, 0.5). Torchvision resizes PIL images with PIL itself, so this
reproduces it with PIL alone: long side = int(res * long / short), crop offsets round((size - res) / 2).
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from showo.errors import ShowoError


def resize_and_crop(image: Image.Image, resolution: int) -> tuple[Image.Image, dict]:
    """RGB PIL image -> the centre-cropped square PIL image and the crop record."""
    if not isinstance(image, Image.Image):
        raise ShowoError(f"the image transform needs a PIL image, got {type(image).__name__}")
    if int(resolution) != resolution or resolution <= 0:
        raise ShowoError(f"image resolution must be a positive integer, got {resolution!r}")
    w, h = image.size
    if w == 0 or h == 0:
        raise ShowoError(f"image has an empty size {w}x{h}")
    image = image.convert("RGB")
    if w <= h:
        new_w, new_h = resolution, int(resolution * h / w)
    else:
        new_w, new_h = int(resolution * w / h), resolution
    if (new_w, new_h) != (w, h):
        image = image.resize((new_w, new_h), Image.Resampling.BICUBIC)
    left = int(round((new_w - resolution) / 2.0))
    top = int(round((new_h - resolution) / 2.0))
    image = image.crop((left, top, left + resolution, top + resolution))
    crop = {"resized": [new_w, new_h], "left": left, "top": top, "size": resolution}
    return image, crop


def to_pixels(image: Image.Image) -> torch.Tensor:
    """RGB PIL image -> float tensor [3,H,W] in [-1, 1] (ToTensor then Normalize(0.5, 0.5))."""
    array = np.asarray(image.convert("RGB"), dtype=np.float32)
    return torch.from_numpy(array).permute(2, 0, 1).div(255.0).sub(0.5).div(0.5).contiguous()


def to_image(pixels: torch.Tensor) -> Image.Image:
    """Tensor [3,H,W] in [-1, 1] -> RGB PIL image (clamped, rounded)."""
    array = ((pixels.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().byte()
    return Image.fromarray(array.permute(1, 2, 0).numpy())


def showo_transform(image: Image.Image, resolution: int) -> tuple[torch.Tensor, dict]:
    """PIL image -> (pixels [3,R,R] in [-1,1], crop record {resized, left, top, size})."""
    cropped, crop = resize_and_crop(image, resolution)
    return to_pixels(cropped), crop
