"""The photos shipped inside scikit-image, scikit-learn and (when installed) matplotlib.

They are the offline tokenizer data: the train photos may be cropped for tokenizer training, the
held-out photos are only ever used to measure reconstruction (PSNR / SSIM).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator

import numpy as np
from PIL import Image

from showo.embedded.splits import check_split
from showo.errors import ShowoError

# scikit-image photos that load without pooch or a download (checked against scikit-image 0.26).
SKIMAGE_PHOTOS: tuple[str, ...] = (
    "astronaut",
    "brick",
    "camera",
    "cell",
    "chelsea",
    "clock",
    "coffee",
    "coins",
    "colorwheel",
    "grass",
    "gravel",
    "hubble_deep_field",
    "immunohistochemistry",
    "moon",
    "page",
    "retina",
    "rocket",
    "text",
)
SKLEARN_PHOTOS: tuple[str, ...] = ("china", "flower")
MATPLOTLIB_PHOTOS: tuple[str, ...] = ("grace_hopper",)
HELDOUT: tuple[str, ...] = ("astronaut", "camera", "china", "coffee")


def _matplotlib_available() -> bool:
    return importlib.util.find_spec("matplotlib") is not None


def names(split: str | None = None) -> tuple[str, ...]:
    """Photo names available here, all or those of one split (held-out names are fixed)."""
    every = SKIMAGE_PHOTOS + SKLEARN_PHOTOS + (MATPLOTLIB_PHOTOS if _matplotlib_available() else ())
    if split is None:
        return every
    check_split(split)
    return tuple(n for n in every if (n in HELDOUT) == (split == "heldout"))


def _to_uint8(array: np.ndarray) -> np.ndarray:
    if array.dtype == bool:
        return array.astype(np.uint8) * 255
    if array.dtype.kind == "f":
        lo, hi = float(array.min()), float(array.max())
        return ((array - lo) / max(hi - lo, 1e-12) * 255).round().astype(np.uint8)
    return array.astype(np.uint8)


def _raw(name: str) -> np.ndarray:
    if name in SKIMAGE_PHOTOS:
        import skimage.data

        return getattr(skimage.data, name)()
    if name in SKLEARN_PHOTOS:
        from sklearn.datasets import load_sample_image

        return load_sample_image(f"{name}.jpg")
    if name in MATPLOTLIB_PHOTOS and _matplotlib_available():
        import matplotlib.cbook

        with matplotlib.cbook.get_sample_data(f"{name}.jpg") as handle:
            return np.asarray(Image.open(handle).convert("RGB"))
    raise ShowoError(f"unknown photo {name!r}; available: {', '.join(names())}")


def load(name: str) -> Image.Image:
    """One photo as an RGB PIL image (grayscale is replicated, alpha is composited on white)."""
    try:
        array = _to_uint8(np.asarray(_raw(name)))
    except (OSError, ModuleNotFoundError, ValueError) as err:
        raise ShowoError(f"photo {name!r} could not be loaded offline: {err}") from err
    if array.ndim == 2:
        return Image.fromarray(array, "L").convert("RGB")
    if array.shape[-1] == 4:
        rgba = Image.fromarray(array, "RGBA")
        canvas = Image.new("RGB", rgba.size, (255, 255, 255))
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    return Image.fromarray(array[..., :3], "RGB")


def photos(split: str) -> Iterator[tuple[str, Image.Image]]:
    """(name, RGB image) for every photo of a split, in a fixed order."""
    for name in names(split):
        yield name, load(name)
