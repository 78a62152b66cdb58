"""Training and evaluation images for the tokenizer, drawn from the embedded offline data.

Training is an endless stream of `crop` px images: random crops of the train photos at random zoom
levels (from the Show-o transform's scale up to 4x closer) with horizontal flips, and random crops of shapes
scenes and digits rendered at the tokenizer's `resolution`, mixed by the recipe's weights. Crops smaller
than the resolution are cheaper per image; the convolutional tokenizer applies to any divisible size. Evaluation sets are fixed: the held-out photos through the Show-o
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
MAX_ZOOM = 4.0


def random_photo_crop(
    image: Image.Image, crop: int, resolution: int, rng: np.random.Generator, max_zoom: float = MAX_ZOOM
) -> Image.Image:
    """A random `crop` px window of the photo seen at a random zoom, flipped half the time.

    Zoom 1 is the photo as the Show-o transform shows it (short side = `resolution`); the zoom is
    log-uniform up to `max_zoom` (or native pixels, if sooner), so training sees the evaluation scale
    as well as closer views.
    """
    w, h = image.size
    short = min(w, h)
    top_zoom = max(1.0, min(max_zoom, short / resolution))
    zoom = math.exp(rng.uniform(0.0, math.log(top_zoom)))
    side = max(1, min(short, int(round(crop * short / (resolution * zoom)))))
    left = int(rng.integers(0, w - side + 1))
    top = int(rng.integers(0, h - side + 1))
    window = image.resize((crop, crop), Image.Resampling.BICUBIC, box=(left, top, left + side, top + side))
    return window.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if rng.random() < 0.5 else window


class MixtureImages(IterableDataset):
    """Endless seeded stream of [3,R,R] pixel tensors in [-1,1] from photos, shapes and digits.

    Each dataloader worker (and each rank) gets its own seed, so streams never repeat one another.
    """

    def __init__(
        self,
        resolution: int,
        weights: dict[str, float],
        seed: int,
        split: str = "train",
        crop: int | None = None,
        max_zoom: float = MAX_ZOOM,
    ) -> None:
        unknown = sorted(set(weights) - set(SOURCES))
        if unknown:
            raise ShowoError(
                f"unknown tokenizer data source(s) {', '.join(unknown)}; expected {', '.join(SOURCES)}"
            )
        total = sum(max(float(v), 0.0) for v in weights.values())
        if total <= 0:
            raise ShowoError("tokenizer data weights must include a positive weight")
        self.resolution = resolution
        self.crop = crop or resolution
        self.max_zoom = max_zoom
        if self.crop > resolution:
            raise ShowoError(f"tokenizer training crop {self.crop} exceeds the resolution {resolution}")
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
            photo = self._photos[int(rng.integers(len(self._photos)))]
            return to_pixels(random_photo_crop(photo, self.crop, self.resolution, rng, self.max_zoom))
        if source == "digits":
            image = digits.upscale(self._digits[int(rng.integers(len(self._digits)))], self.resolution)
        else:
            index = int(rng.integers(shapes.HELDOUT_SEED_OFFSET))
            image = shapes.render(shapes.sample_scene(shapes.scene_rng(self.split, index)), self.resolution)
        pixels = to_pixels(image)
        if self.crop < self.resolution:
            top, left = (int(v) for v in rng.integers(0, self.resolution - self.crop + 1, size=2))
            pixels = pixels[:, top : top + self.crop, left : left + self.crop]
        return pixels

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
            images.append(to_pixels(random_photo_crop(image, resolution, resolution, rng)))
            names.append(f"{name}/crop{i}")
    return torch.stack(images), names
