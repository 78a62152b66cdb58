"""The image encoders a build stores the output of: discrete codes from an image tokenizer (`codes.npy`,
uint16, for MaskGIT and AR) or continuous latents from a diffusers VAE (`latents.npy`, float16, for the
diffusion objective). The build, the manifest and `inspect`/`stats` see one interface, so the rest of the
engine (accounting, resume, partitions, dedup by sha1) is the same for both.

Latents are the VAE's raw output (its posterior mean, deterministic): the scaling and shift of the VAE's
config are applied at training time, and recorded in build.json and the manifest so a reader knows them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from showo.errors import ShowoError

FLOAT16_MAX = float(np.finfo(np.float16).max)


class ImageEncoder(ABC):
    """One loaded encoder: what it writes (`image_format`, `member`), under which build.json key its
    identity goes (`settings_key`), the latent grid [h, w] at the build's resolution, and `encode`."""

    image_format: ClassVar[str]
    member: ClassVar[str]
    settings_key: ClassVar[str]
    what: ClassVar[str]
    """How error messages name the encoder."""

    def __init__(self, model: Any, path: str, resolution: int, device: torch.device):
        factor = model.downsample_factor
        if resolution <= 0 or resolution % factor:
            raise ShowoError(
                f"--resolution {resolution} is not a multiple of the {self.what}'s downsample factor {factor}"
            )
        self.model = model
        self.path = str(Path(path).resolve())
        self.grid = [resolution // factor, resolution // factor]
        self.device = device

    @abstractmethod
    def describe(self) -> dict:
        """The encoder's entry in build.json and every manifest line (path, identity, what readers need)."""

    @abstractmethod
    def encode(self, pixels: torch.Tensor) -> np.ndarray:
        """Pixels [N,3,R,R] in [-1,1] on the device -> N stored arrays stacked, in their stored dtype."""


class CodeEncoder(ImageEncoder):
    """An image tokenizer: codes 0..K-1 in raster order, [h*w] per image."""

    image_format = "codes"
    member = "codes.npy"
    settings_key = "tokenizer"
    what = "tokenizer"

    def __init__(self, path: str, resolution: int, device: torch.device):
        from showo.tokenizer import load_image_tokenizer

        tokenizer = load_image_tokenizer(path)
        super().__init__(tokenizer, path, resolution, device)
        if tokenizer.codebook_size > 2**16:
            raise ShowoError(
                f"codebook of {tokenizer.codebook_size} codes does not fit the uint16 code format"
            )
        self.model = tokenizer.to(device).eval()

    def describe(self) -> dict:
        return {
            "path": self.path,
            "identity": self.model.identity(),
            "codebook_size": self.model.codebook_size,
        }

    def encode(self, pixels: torch.Tensor) -> np.ndarray:
        return self.model.encode(pixels).cpu().numpy().astype(np.uint16)


class LatentEncoder(ImageEncoder):
    """A diffusers VAE: its raw posterior mean, [C, h, w] per image, stored as float16."""

    image_format = "latents"
    member = "latents.npy"
    settings_key = "vae"
    what = "VAE"

    def __init__(self, path: str, resolution: int, device: torch.device):
        from showo.vae import load_vae

        vae = load_vae(path)
        super().__init__(vae, path, resolution, device)
        self.model = vae.to(device)

    def describe(self) -> dict:
        vae = self.model
        return {
            "path": self.path,
            "identity": vae.identity(),
            "latent_channels": vae.latent_channels,
            "downsample_factor": vae.downsample_factor,
            "scaling_factor": vae.scaling_factor,
            "shift_factor": vae.shift_factor,
        }

    def encode(self, pixels: torch.Tensor) -> np.ndarray:
        latents = self.model.encode(pixels).float().cpu().numpy()
        if not np.isfinite(latents).all() or np.abs(latents).max(initial=0.0) > FLOAT16_MAX:
            raise ShowoError(
                f"VAE {self.path} gave latents that are not finite or exceed float16's range; "
                "the shard format stores float16"
            )
        return latents.astype(np.float16)


def load_encoder(
    tokenizer: str | None, vae: str | None, resolution: int, device: torch.device
) -> ImageEncoder:
    """The encoder the options name (exactly one of them, checked by `options.check_encoder`)."""
    if vae is not None:
        return LatentEncoder(vae, resolution, device)
    assert tokenizer is not None
    return CodeEncoder(tokenizer, resolution, device)
