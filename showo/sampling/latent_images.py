"""The image codec of a continuous (latent) objective: a diffusers `AutoencoderKL` between pixels and the model's
scaled latents, shaped like an image tokenizer so the pipeline, the commands and the eval suites use either.

Encoding takes the posterior mean (deterministic, as the data engine stores latents) and applies the
objective's scaling; decoding undoes it (`ImageObjective.scale` / `unscale`) before the VAE's decoder.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any

import torch


class LatentImages:
    """Pixels [B,3,H,W] in [-1,1] <-> scaled latents [B,C,h,w] through `vae` and `objective`'s scaling."""

    def __init__(self, vae: Any, objective: Any, patch_size: int) -> None:
        self.vae, self.objective = vae, objective
        vae_factor = 2 ** (len(vae.config.block_out_channels) - 1)
        self.downsample_factor = vae_factor * patch_size
        """Pixels per image position side (the VAE's downsampling times the patch size)."""

    def to(self, device: torch.device | str) -> LatentImages:
        self.vae.to(device)
        return self

    def eval(self) -> LatentImages:
        self.vae.eval()
        return self

    def parameters(self) -> Iterator[torch.nn.Parameter]:
        return self.vae.parameters()

    def _dtype_device(self) -> tuple[torch.dtype, torch.device]:
        weight = next(self.vae.parameters())
        return weight.dtype, weight.device

    @torch.no_grad()
    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """Pixels -> the model's scaled latents (float32)."""
        dtype, device = self._dtype_device()
        raw = self.vae.encode(pixels.to(device, dtype)).latent_dist.mean
        return self.objective.scale(raw.float())

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """The model's scaled latents -> pixels in [-1,1] (float32)."""
        dtype, device = self._dtype_device()
        raw = self.objective.unscale(latents.float())
        return self.vae.decode(raw.to(device, dtype)).sample.float().clamp(-1.0, 1.0)

    def identity(self) -> str:
        """A stable hash of the VAE's config and weights, recorded with eval results."""
        digest = hashlib.sha256(json.dumps(dict(self.vae.config), sort_keys=True, default=str).encode())
        for key, value in sorted(self.vae.state_dict().items()):
            digest.update(key.encode())
            digest.update(str(tuple(value.shape)).encode())
            digest.update(value.detach().float().cpu().contiguous().numpy().tobytes())
        return f"autoencoder-kl-{digest.hexdigest()[:16]}"
