"""A corpus of deliberately bad (and a few awkward but valid) inputs, with the outcome each must get."""

from __future__ import annotations

import io
import struct
import tarfile
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

GOOD_SIZE = (96, 80)


def gradient(size: tuple[int, int] = GOOD_SIZE, seed: int = 0) -> Image.Image:
    """A smooth RGB picture with some texture (so JPEG keeps it close)."""
    w, h = size
    y, x = np.mgrid[0:h, 0:w]
    rng = np.random.default_rng(seed)
    a, b, c = rng.uniform(0.02, 0.2, 3)
    rgb = np.stack([(x * a * 40) % 255, (y * b * 40) % 255, ((x + y) * c * 20) % 255], axis=-1)
    return Image.fromarray(rgb.astype(np.uint8), "RGB")


def jpeg_bytes(image: Image.Image, **kw) -> bytes:
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=92, **kw)
    return out.getvalue()


def png_bytes(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def bomb_png(width: int = 40_000, height: int = 40_000) -> bytes:
    """A valid ~100-byte PNG whose header declares width x height pixels (1.6 G by default)."""
    data = png_bytes(Image.new("L", (8, 8)))
    ihdr_at = data.index(b"IHDR")
    header = struct.pack(">II", width, height) + data[ihdr_at + 12 : ihdr_at + 17]
    chunk = b"IHDR" + header
    return data[:ihdr_at] + chunk + struct.pack(">I", zlib.crc32(chunk) & 0xFFFFFFFF) + data[ihdr_at + 21 :]


def exif_rotated_jpeg() -> bytes:
    """Stored 96x64 with a red left half; EXIF orientation 6 means "rotate 90 degrees clockwise to view",
    so the viewer sees 64x96 with red on top."""
    stored = Image.new("RGB", (96, 64), (0, 0, 255))
    stored.paste((255, 0, 0), (0, 0, 48, 64))
    exif = Image.Exif()
    exif[0x0112] = 6
    return jpeg_bytes(stored, exif=exif.tobytes())


def sixteen_bit_png() -> bytes:
    """A 16-bit greyscale PNG: left half 65535 (white), right half 32896 (= 128 * 257, mid grey)."""
    grey = np.full((64, 64), 32896, dtype=np.uint16)
    grey[:, :32] = 65535
    return png_bytes(Image.fromarray(grey))


def cmyk_jpeg() -> bytes:
    return jpeg_bytes(Image.new("CMYK", (64, 64), (0, 255, 255, 0)))  # pure red in CMYK


def palette_png_with_transparency() -> bytes:
    image = Image.new("P", (64, 64), 0)
    image.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    image.paste(1, (0, 0, 32, 64))
    image.info["transparency"] = 0
    out = io.BytesIO()
    image.save(out, format="PNG", transparency=0)
    return out.getvalue()


# name -> (bytes factory, caption or None, expected reason or None for "written")
def corpus() -> dict[str, tuple[bytes, str | None, str | None]]:
    good = jpeg_bytes(gradient())
    return {
        "good.jpg": (good, "a smooth gradient", None),
        "good_png.png": (png_bytes(gradient(seed=1)), "a png gradient", None),
        "truncated.jpg": (good[: len(good) // 2], "half a file", "corrupt_image"),
        "zero.jpg": (b"", "nothing", "empty_file"),
        "text.jpg": (b"<html>this is not an image</html>\n", "html", "not_an_image"),
        "one_pixel.png": (png_bytes(Image.new("RGB", (1, 1), (9, 9, 9))), "a dot", "too_small"),
        "bomb.png": (bomb_png(), "a bomb", "decompression_bomb"),
        "cmyk.jpg": (cmyk_jpeg(), "cmyk red", None),
        "sixteen.png": (sixteen_bit_png(), "16-bit grey", None),
        "exif.jpg": (exif_rotated_jpeg(), "rotated", None),
        "alpha.png": (palette_png_with_transparency(), "palette with transparency", None),
        "nocaption.jpg": (jpeg_bytes(gradient(seed=2)), None, "missing_caption"),
        "longcaption.jpg": (jpeg_bytes(gradient(seed=3)), "x" * 100_000, "caption_too_long"),
        "zz_copy_of_good.jpg": (good, "the same bytes again", "duplicate"),
    }


def write_pairs(directory: Path) -> dict[str, str | None]:
    """The corpus as a `pairs:` directory; returns name -> expected reason (None: written)."""
    directory.mkdir(parents=True, exist_ok=True)
    expected = {}
    for name, (data, caption, reason) in corpus().items():
        (directory / name).write_bytes(data)
        if caption is not None:
            (directory / name).with_suffix(".txt").write_text(caption)
        expected[name] = reason
    return expected


def write_tar(path: Path) -> dict[str, str | None]:
    """The corpus as a raw `wds:` tar plus path-traversal and absolute members; key -> expected reason."""
    expected = {}
    with tarfile.open(path, "w") as tar:

        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

        for i, (name, (data, caption, reason)) in enumerate(corpus().items()):
            key = f"{i:04d}_{Path(name).stem}"
            ext = Path(name).suffix[1:]
            add(f"{key}.{ext}", data)
            if caption is not None:
                add(f"{key}.txt", caption.encode())
            expected[key] = reason
        add("../../escape.jpg", jpeg_bytes(gradient(seed=5)))
        expected["../../escape.jpg"] = "unsafe_member_name"
        add("/etc/absolute.jpg", jpeg_bytes(gradient(seed=6)))
        expected["/etc/absolute.jpg"] = "unsafe_member_name"
    return expected
