"""scikit-learn's 1,797 real handwritten digits as class-labelled images (the offline analogue of
ImageNet for class-conditional generation).

The 8x8 originals (intensities 0..16, bright strokes on black) are bicubic-upscaled to RGB; `downscale`
is the inverse used to judge generated digits, so the judge sees real data exactly as it was stored.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image

from showo.embedded.splits import check_split
from showo.errors import ShowoError

CLASS_NAMES: tuple[str, ...] = (
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
)
MAX_INTENSITY = 16.0
# Every fifth digit is held out: the stored order cycles through writers, so both splits see all writers.
HELDOUT_EVERY = 5


@dataclass(frozen=True)
class Digit:
    index: int
    label: int
    class_name: str
    image: Image.Image


@lru_cache(maxsize=1)
def _load() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    data = load_digits()
    return data.images.astype(np.float32), data.target.astype(np.int64)


def split_indices(split: str) -> np.ndarray:
    """Indices into `load_digits()` of a split (held-out: every fifth digit)."""
    check_split(split)
    n = len(_load()[1])
    held = np.arange(n) % HELDOUT_EVERY == HELDOUT_EVERY - 1
    return np.flatnonzero(held if split == "heldout" else ~held)


def arrays(split: str) -> tuple[np.ndarray, np.ndarray]:
    """The raw 8x8 images (float32, 0..16) and labels of a split."""
    images, labels = _load()
    idx = split_indices(split)
    return images[idx], labels[idx]


def upscale(digit: np.ndarray, size: int = 64) -> Image.Image:
    """An 8x8 array of 0..16 intensities as a `size` px RGB image (bicubic)."""
    if digit.shape != (8, 8):
        raise ShowoError(f"a digit is an 8x8 array, got shape {tuple(digit.shape)}")
    pixels = np.clip(np.asarray(digit, np.float32) * (255.0 / MAX_INTENSITY), 0, 255).round().astype(np.uint8)
    return Image.fromarray(pixels, "L").resize((size, size), Image.Resampling.BICUBIC).convert("RGB")


def downscale(image: Image.Image) -> np.ndarray:
    """An image as the 8x8 array of 0..16 intensities the real digits are stored as (box average)."""
    gray = image.convert("L").resize((8, 8), Image.Resampling.BOX)
    return np.asarray(gray, np.float32) * (MAX_INTENSITY / 255.0)


def digits(split: str, size: int = 64) -> Iterator[Digit]:
    """The digits of a split as upscaled RGB images with their labels and class names."""
    images, labels = _load()
    for i in split_indices(split):
        label = int(labels[i])
        yield Digit(int(i), label, CLASS_NAMES[label], upscale(images[i], size))
