"""Image degradations standing in for what a lossy tokenizer and an imperfect generator do to a render.

The shapes detector learns its shape boundaries on degraded renders and is validated against the same
families on held-out scenes, so its accuracy holds for blurred, blocky or noisy generations.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageFilter


def blur(image: Image.Image, sigma: float) -> Image.Image:
    return image.filter(ImageFilter.GaussianBlur(sigma))


def jpeg(image: Image.Image, quality: int) -> Image.Image:
    """A JPEG round trip (4:2:0 chroma subsampling, the harsh default)."""
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG", quality=int(quality))
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def resample(image: Image.Image, factor: int) -> Image.Image:
    """Bicubic down by `factor` and back up: the detail a coarse code grid loses."""
    w, h = image.size
    small = image.resize((max(1, w // factor), max(1, h // factor)), Image.Resampling.BICUBIC)
    return small.resize((w, h), Image.Resampling.BICUBIC)


def noise(image: Image.Image, sigma: float, rng: np.random.Generator) -> Image.Image:
    pixels = np.asarray(image.convert("RGB"), dtype=np.float64)
    pixels = pixels + rng.normal(0.0, sigma, pixels.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).round().astype(np.uint8))


def random_degradation(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """One of: untouched, blur, JPEG, resample, noise, or blur+noise+JPEG, with random strength."""
    kind = int(rng.integers(6))
    if kind == 1:
        return blur(image, float(rng.uniform(0.4, 1.2)))
    if kind == 2:
        return jpeg(image, int(rng.integers(15, 70)))
    if kind == 3:
        return resample(image, 2)
    if kind == 4:
        return noise(image, float(rng.uniform(3.0, 14.0)), rng)
    if kind == 5:
        degraded = noise(blur(image, float(rng.uniform(0.4, 1.0))), float(rng.uniform(2.0, 10.0)), rng)
        return jpeg(degraded, int(rng.integers(25, 70)))
    return image
