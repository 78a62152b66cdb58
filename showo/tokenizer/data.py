"""Training and evaluation images for the tokenizer, drawn from the embedded offline data.

Training is an endless stream of `resolution` px images: random crops of the train photos at random
zoom levels (from the whole photo down to native pixels) with horizontal flips, shapes scenes and
digits, mixed by the recipe's weights. Evaluation sets are fixed: the held-out photos through the Show-o
transform (plus seeded crops of them), and a seeded sample of the training mixture for codebook usage.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch
from PIL import Image
from torch.utils.data import IterableDataset

from showo.embedded import digits, photos, shapes
from showo.errors import ShowoError
from showo.tokenizer.transform import showo_transform, to_pixels

SOURCES: tuple[str, ...] = ("photos", "shapes", "digits")


def random_photo_crop(image: Image.Image, resolution: int, rng: np.random.Generator) -> Image.Image:
    """A square crop whose side is log-uniform between `resolution` and the short side, bicubic-resized."""
    w, h = image.size
    short = min(w, h)
    side = (
        short
        if short <= resolution
        else int(round(math.exp(rng.uniform(math.log(resolution), math.log(short)))))
    )
    left = int(rng.integers(0, w - side + 1))
    top = int(rng.integers(0, h - side + 1))
    crop = image.resize(
        (resolution, resolution), Image.Resampling.BICUBIC, box=(left, top, left + side, top + side)
    )
    return crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if rng.random() < 0.5 else crop


class MixtureImages(IterableDataset):
    """Endless seeded stream of [3,R,R] pixel tensors in [-1,1] from photos, shapes and digits.

    Each dataloader worker (and each rank) gets its own seed, so streams never repeat one another.
    """

    def __init__(self, resolution: int, weights: dict[str, float], seed: int, split: str = "train") -> None:
        unknown = sorted(set(weights) - set(SOURCES))
        if unknown:
            raise ShowoError(
                f"unknown tokenizer data source(s) {', '.join(unknown)}; expected {', '.join(SOURCES)}"
            )
        total = sum(max(float(v), 0.0) for v in weights.values())
        if total <= 0:
            raise ShowoError("tokenizer data weights must include a positive weight")
        self.resolution = resolution
        self.names = [k for k in SOURCES if weights.get(k, 0) > 0]
        self.probs = np.array([float(weights[k]) for k in self.names]) / total
        self.seed = seed
        self.split = split
        self._photos: list[Image.Image] | None = None
        self._digits: np.ndarray | None = None

    def _load(self) -> None:
        if self._photos is None:
            self._photos = [img for _, img in photos.photos(self.split)] if "photos" in self.names else []
            self._digits = digits.arrays(self.split)[0] if "digits" in self.names else np.zeros((0, 8, 8))

    def sample(self, rng: np.random.Generator) -> torch.Tensor:
        """One image from the mixture."""
        self._load()
        source = self.names[int(rng.choice(len(self.names), p=self.probs))]
        if source == "photos":
            image = random_photo_crop(
                self._photos[int(rng.integers(len(self._photos)))], self.resolution, rng
            )
        elif source == "digits":
            image = digits.upscale(self._digits[int(rng.integers(len(self._digits)))], self.resolution)
        else:
            index = int(rng.integers(shapes.HELDOUT_SEED_OFFSET))
            image = shapes.render(shapes.sample_scene(shapes.scene_rng(self.split, index)), self.resolution)
        return to_pixels(image)

    def __iter__(self) -> Iterator[torch.Tensor]:
        info = torch.utils.data.get_worker_info()
        rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
        rng = np.random.default_rng([self.seed, rank, info.id if info else 0])
        while True:
            yield self.sample(rng)


def fixed_sample(resolution: int, weights: dict[str, float], seed: int, n: int) -> torch.Tensor:
    """`n` images of the training mixture drawn with a fixed seed: the set codebook usage is measured on."""
    mixture = MixtureImages(resolution, weights, seed)
    rng = np.random.default_rng([seed, 7919])
    return torch.stack([mixture.sample(rng) for _ in range(n)])


def heldout_photos(
    resolution: int, crops_per_photo: int = 0, seed: int = 0
) -> tuple[torch.Tensor, list[str]]:
    """Held-out photos through the Show-o transform, then `crops_per_photo` seeded random crops of each."""
    rng = np.random.default_rng(seed)
    images, names = [], []
    for name, image in photos.photos("heldout"):
        images.append(showo_transform(image, resolution)[0])
        names.append(name)
        for i in range(crops_per_photo):
            images.append(to_pixels(random_photo_crop(image, resolution, rng)))
            names.append(f"{name}/crop{i}")
    return torch.stack(images), names
