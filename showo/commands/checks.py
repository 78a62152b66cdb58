"""argparse `type=` checks for numbers and paths, so a bad argument fails before any model loads.

Each check raises `argparse.ArgumentTypeError`; `showo.cli.Parser` turns it into one line
`showo: error: <command>: argument --x: <why>` and exit status 2. Kept free of torch (PIL is imported only
when an image is checked) so `showo --help` stays fast.

The upper bounds are generous limits, not tuning advice: they stop a typo (`--n 40000`) or an absurd value
from allocating for minutes before anything fails.
"""

from __future__ import annotations

import argparse
import math
import re
import warnings
from collections.abc import Callable
from pathlib import Path

MAX_N = 1024
"""Images (or variants) per prompt and images per forward batch."""
MAX_STEPS = 1000
"""MaskGIT steps; the official demos use 12 to 50."""
MAX_GUIDANCE = 1000.0
"""CFG scale; the official demos use 1.75 to 5. Far above this the guided logits overflow float32."""
MAX_TEMPERATURE = 100.0
MIN_POSITIVE_TEMPERATURE = 1e-4
"""Below this, logits / temperature can overflow float32 and the softmax becomes NaN."""
MAX_NEW_TOKENS = 4096
MAX_FRAMES = 64
"""Images in one interleaved sequence (`showo interleave`); the model's caption budget usually binds first."""
MAX_SEED = 2**64 - 1
"""torch.Generator.manual_seed takes 64 bits."""
MAX_GRID = 4096
"""Bound of extrapolate's --offset (the real range, inside (-g/2, g/2), depends on the model's grid g)."""
MAX_TOP_K = 2**31 - 1
MAX_VOCAB = 2**31 - 1


def _shown(text: str) -> str:
    """The user's argument, quoted and cut short (a pasted megabyte stays out of the one-line error)."""
    return repr(text if len(text) <= 40 else text[:37] + "...")


def integer(low: int, high: int) -> Callable[[str], int]:
    """An int in low..high (both included)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {_shown(text)}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {_shown(text)}")
        if value > high:
            raise argparse.ArgumentTypeError(f"must be at most {high}, got {_shown(text)}")
        return value

    parse.__name__ = "integer"
    return parse


def number(low: float, high: float) -> Callable[[str], float]:
    """A finite float in [low, high] (nan and inf refused)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {_shown(text)}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {_shown(text)}")
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low:g}, got {_shown(text)}")
        if value > high:
            raise argparse.ArgumentTypeError(f"must be <= {high:g}, got {_shown(text)}")
        return value

    parse.__name__ = "number"
    return parse


seed = integer(0, MAX_SEED)
steps = integer(1, MAX_STEPS)
count = integer(1, MAX_N)
guidance = number(0.0, MAX_GUIDANCE)
max_new_tokens = integer(1, MAX_NEW_TOKENS)
frames = integer(1, MAX_FRAMES)
top_k = integer(1, MAX_TOP_K)
vocab_size = integer(1, MAX_VOCAB)
_top_p = number(0.0, 1.0)
_temperature = number(0.0, MAX_TEMPERATURE)


def temperature(text: str) -> float:
    """0 (greedy / no remasking noise) or a finite value in [1e-4, 100]."""
    value = _temperature(text)
    if 0 < value < MIN_POSITIVE_TEMPERATURE:
        raise argparse.ArgumentTypeError(
            f"must be 0 or at least {MIN_POSITIVE_TEMPERATURE:g}, got {_shown(text)}"
        )
    return value


def top_p(text: str) -> float:
    """A probability mass in (0, 1]."""
    value = _top_p(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {_shown(text)}")
    return value


port = integer(0, 65535)
"""A TCP port, 1..65535, or 0 for one the system picks."""

_DEVICE = re.compile(r"auto|cpu|cuda(:\d{1,3})?")


def device(text: str) -> str:
    """auto, cpu, cuda or cuda:N (whether that GPU exists is checked when the model loads)."""
    if not _DEVICE.fullmatch(text):
        raise argparse.ArgumentTypeError(f"expected auto, cpu, cuda or cuda:N, got {_shown(text)}")
    return text


def image_file(text: str) -> str:
    """An existing image file whose header Pillow reads, within Pillow's decompression-bomb limit.

    Only the header is read here; the pixels are decoded later (`showo.sampling.images.load_image`).
    Pillow merely warns between its limit and twice that; the warning is an error here too.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(text)
    if not path.exists():
        raise argparse.ArgumentTypeError(f"image not found: {path}")
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{path} is a directory, not an image file")
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"{path} is not a regular file")
    limit = Image.MAX_IMAGE_PIXELS or 89_478_485  # Pillow's default, should anyone have switched it off
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise argparse.ArgumentTypeError(
            f"refusing {path}: it declares more pixels than the decompression-bomb limit ({limit})"
        ) from None
    except UnidentifiedImageError:
        raise argparse.ArgumentTypeError(
            f"cannot read image {path}: not an image file Pillow knows"
        ) from None
    except (OSError, ValueError, SyntaxError) as err:
        raise argparse.ArgumentTypeError(f"cannot read image {path}: {' '.join(str(err).split())}") from None
    if width * height > limit:
        raise argparse.ArgumentTypeError(
            f"refusing {path}: {width}x{height} pixels is over the decompression-bomb limit ({limit})"
        )
    return text


def output_file(text: str) -> str:
    """A file we may create or replace: not a directory, and under a directory (or a name that can be one)."""
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{path} is a directory; give a file name inside it")
    _parent_is_a_directory(path)
    return text


def output_dir(text: str) -> str:
    """A directory we may create or fill: not an existing file."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{path} exists and is not a directory")
    _parent_is_a_directory(path)
    return text


def _parent_is_a_directory(path: Path) -> None:
    """The nearest existing ancestor must be a directory (else creating the parents fails later)."""
    for parent in path.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise argparse.ArgumentTypeError(f"cannot create {path}: {parent} is not a directory")
            return
