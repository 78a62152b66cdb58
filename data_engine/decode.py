"""Safe decoding of untrusted inputs: every way a file can be bad becomes a `Reject` with a short reason.

Web-scale corpora contain truncated downloads, HTML saved as .jpg, decompression bombs, CMYK and 16-bit
files and EXIF-rotated photos. None of them may crash a build or silently turn into garbage codes, so
decoding either returns a clean RGB image with its displayed size or raises `Reject(reason)`; the build
records the reason per input.
"""

from __future__ import annotations

import io
import posixpath
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# Reasons are stable identifiers (they are counted in report.json's `rejected_by_reason`).
EMPTY_FILE = "empty_file"
NOT_AN_IMAGE = "not_an_image"
CORRUPT = "corrupt_image"
BOMB = "decompression_bomb"
TOO_SMALL = "too_small"
BAD_EXIF = "bad_exif"
UNSUPPORTED_MODE = "unsupported_mode"
UNREADABLE = "unreadable_file"

PILLOW_DEFAULT_MAX_PIXELS = 89_478_485  # Pillow's own default for Image.MAX_IMAGE_PIXELS

_ALPHA_MODES = frozenset({"LA", "La", "PA", "RGBA", "RGBa"})
_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})
_WHITE = (255, 255, 255)


def bomb_limit() -> int:
    """Pillow's decompression-bomb limit, or its default should anything have switched it off (some
    libraries set `Image.MAX_IMAGE_PIXELS = None` on import): the guard is never off here."""
    return Image.MAX_IMAGE_PIXELS or PILLOW_DEFAULT_MAX_PIXELS


class Reject(Exception):
    """One input that cannot become a sample; `reason` is a stable identifier, `detail` is free text."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def decode_image(data: bytes, *, min_size: int = 0, max_pixels: int | None = None) -> Image.Image:
    """Decode untrusted bytes to an RGB image with EXIF orientation applied.

    The guard against decompression bombs is Pillow's own (`Image.MAX_IMAGE_PIXELS`, checked at open from
    the declared size), with its warning promoted to an error, plus our check of the declared size
    against `bomb_limit()` or a tighter `max_pixels`, before any pixel is decoded.
    """
    if not data:
        raise Reject(EMPTY_FILE)
    limit = bomb_limit() if max_pixels is None else min(max_pixels, bomb_limit())
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > limit:
                raise Reject(BOMB, f"declared size {width}x{height} exceeds {limit} pixels")
            image.load()
    except Reject:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise Reject(BOMB, str(err)) from None
    except UnidentifiedImageError:
        raise Reject(NOT_AN_IMAGE) from None
    except (OSError, SyntaxError, ValueError, EOFError, MemoryError) as err:
        raise Reject(CORRUPT, str(err)) from None
    try:
        image = ImageOps.exif_transpose(image)
    except (OSError, SyntaxError, ValueError, KeyError, TypeError) as err:
        raise Reject(BAD_EXIF, str(err)) from None
    image = to_rgb(image)
    if min(image.size) < min_size:
        raise Reject(TOO_SMALL, f"{image.size[0]}x{image.size[1]} is below {min_size} px")
    return image


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB: alpha is composited over white (not dropped, which shows
    whatever colour hides under transparent pixels), 16-bit grey is rescaled (not clipped to white)."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode == "P" and "transparency" in image.info:
        image, mode = image.convert("RGBA"), "RGBA"
    if mode in _ALPHA_MODES:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, _WHITE + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode in _SIXTEEN_BIT_MODES:
        grey = np.asarray(image, dtype=np.float64)
        scale = 257.0 if grey.max(initial=0) > 255 or mode != "I" else 1.0
        grey = np.clip(np.rint(grey / scale), 0, 255).astype(np.uint8)
        return Image.fromarray(grey).convert("RGB")
    if mode == "F":
        grey = np.asarray(image, dtype=np.float64)
        if grey.max(initial=0) <= 1.0:
            grey = grey * 255.0
        return Image.fromarray(np.clip(np.rint(grey), 0, 255).astype(np.uint8)).convert("RGB")
    try:
        return image.convert("RGB")
    except (ValueError, OSError) as err:
        raise Reject(UNSUPPORTED_MODE, f"{mode}: {err}") from None


def safe_member_name(name: str) -> str | None:
    """A tar member name normalised to a relative POSIX path, or None when it is absolute or escapes
    upward (`../`): such members are never trusted as keys, let alone as paths."""
    if not name or "\x00" in name or "\\" in name:
        return None
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return None
    normal = posixpath.normpath(name)
    if normal in (".", "") or normal.startswith("../") or normal == ".." or "/../" in f"/{normal}/":
        return None
    return normal
