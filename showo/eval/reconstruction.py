"""Tokenizer quality: PSNR and SSIM of an encode -> decode round trip, and the entropy of its codes.

Images go through the system's one transform (`showo_transform`) so the reference is exactly what the
tokenizer saw; the metrics are scikit-image's, on uint8 RGB. The code entropy says how hard the codes are
to model: a tokenizer that spreads one flat background over many codes reconstructs it as well as one
that uses a single code, but leaves the generator a guessing game at every background position.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import torch
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from showo.errors import ShowoError


def psnr(reference: Image.Image, test: Image.Image) -> float:
    """PSNR in dB of two same-size RGB images (data range 255); inf for identical images."""
    a, b = _pair(reference, test)
    if np.array_equal(a, b):
        return float("inf")
    return float(peak_signal_noise_ratio(a, b, data_range=255))


def ssim(reference: Image.Image, test: Image.Image) -> float:
    """Mean SSIM over RGB channels (scikit-image's default 7x7 window, or the image size if smaller)."""
    a, b = _pair(reference, test)
    window = min(7, *a.shape[:2])
    window -= 1 - window % 2
    return float(structural_similarity(a, b, data_range=255, channel_axis=-1, win_size=window))


def _pair(reference: Image.Image, test: Image.Image) -> tuple[np.ndarray, np.ndarray]:
    if reference.size != test.size:
        raise ShowoError(f"images differ in size: {reference.size} vs {test.size}")
    return np.asarray(reference.convert("RGB")), np.asarray(test.convert("RGB"))


@torch.no_grad()
def round_trip(image_tokenizer, image: Image.Image, resolution: int) -> tuple[Image.Image, Image.Image]:
    """(the transformed input, its reconstruction) at `resolution`."""
    from showo.sampling.images import decode_codes, to_pil
    from showo.tokenizer.transform import showo_transform, to_image

    pixels, _ = showo_transform(image, resolution)
    device = next(image_tokenizer.parameters()).device
    codes = image_tokenizer.encode(pixels.unsqueeze(0).to(device))
    side = resolution // image_tokenizer.downsample_factor
    return to_image(pixels), to_pil(decode_codes(image_tokenizer, codes, (side, side)))[0]


def reconstruction_scores(
    image_tokenizer, images: Iterable[tuple[str, Image.Image]], resolution: int
) -> dict:
    """Mean and per-image PSNR / SSIM over named images."""
    trips = {name: round_trip(image_tokenizer, image, resolution) for name, image in images}
    return pair_scores(trips, resolution)


def pair_scores(trips: Mapping[str, tuple[Image.Image, Image.Image]], resolution: int) -> dict:
    """Mean and per-image PSNR / SSIM of named (original, reconstruction) pairs from `round_trip`."""
    if not trips:
        raise ShowoError("no images to reconstruct")
    per_image = {
        name: {"psnr": psnr(original, rebuilt), "ssim": ssim(original, rebuilt)}
        for name, (original, rebuilt) in trips.items()
    }
    return {
        "psnr": float(np.mean([v["psnr"] for v in per_image.values()])),
        "ssim": float(np.mean([v["ssim"] for v in per_image.values()])),
        "resolution": resolution,
        "images": per_image,
    }


def code_statistics(codes: torch.Tensor) -> dict:
    """Entropy (bits per token) and number of distinct codes of the empirical code distribution."""
    if codes.numel() == 0:
        raise ShowoError("no codes to measure")
    counts = torch.unique(codes.flatten().cpu(), return_counts=True)[1].double()
    p = counts / counts.sum()
    return {"code_entropy_bits": float(-(p * p.log2()).sum()), "distinct_codes": int(counts.numel())}
