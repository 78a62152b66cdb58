"""The latent image head of the transformer (Transfusion): continuous VAE latents in and out of image positions.

A latent ``[C, h, w]`` is cut into ``p x p`` patches in raster order (one image position each, ``N = (h/p) *
(w/p)``); `embed` maps each patch to the transformer's width with a linear patch embedding and adds a timestep
embedding (sinusoidal features of t, then an MLP: diffusers' `Timesteps` / `TimestepEmbedding`) to every
image position of the row, so the transformer knows the noise level; `output` maps final hidden states back
to patch latents (norm + linear, the projection zero-initialised so training starts from a zero prediction,
as DiT's final layer does). ``t = 0`` is a clean latent (understanding rows, the conditioning images of
mixed rows).
"""

from __future__ import annotations

import torch
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from torch import nn

from showo.errors import ShowoError

TIMESTEP_FEATURES = 256
"""Sinusoidal features of t before the MLP (DiT's and diffusers' common choice)."""


class LatentHead(nn.Module):
    """Patch embedding + timestep embedding in, norm + projection out; ``p`` = patch size, ``C`` = channels."""

    def __init__(self, hidden_size: int, latent_channels: int, patch_size: int) -> None:
        super().__init__()
        if latent_channels < 1 or patch_size < 1:
            raise ShowoError(
                f"latent_channels and patch_size must be positive, got {latent_channels}, {patch_size}"
            )
        self.latent_channels = latent_channels
        self.patch_size = patch_size
        self.patch_dim = latent_channels * patch_size * patch_size
        self.patch_embed = nn.Linear(self.patch_dim, hidden_size)
        self.time_proj = Timesteps(TIMESTEP_FEATURES, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_embed = TimestepEmbedding(TIMESTEP_FEATURES, hidden_size)
        self.norm = nn.LayerNorm(hidden_size)
        self.proj_out = nn.Linear(hidden_size, self.patch_dim)
        nn.init.zeros_(self.proj_out.weight)
        nn.init.zeros_(self.proj_out.bias)

    def grid(self, latent_hw: tuple[int, int]) -> tuple[int, int]:
        """The patch grid of a latent of spatial size ``(h, w)``."""
        h, w = latent_hw
        p = self.patch_size
        if h % p or w % p:
            raise ShowoError(f"a {h}x{w} latent is not divisible into {p}x{p} patches")
        return h // p, w // p

    def patchify(self, latents: torch.Tensor) -> torch.Tensor:
        """``[B, C, h, w] -> [B, N, C*p*p]``, patches in raster order, each patch flattened as (C, p, p)."""
        b, c, h, w = latents.shape
        if c != self.latent_channels:
            raise ShowoError(f"latents have {c} channels, the latent head takes {self.latent_channels}")
        gh, gw = self.grid((h, w))
        p = self.patch_size
        x = latents.reshape(b, c, gh, p, gw, p).permute(0, 2, 4, 1, 3, 5)
        return x.reshape(b, gh * gw, self.patch_dim)

    def unpatchify(self, patches: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """``[B, N, C*p*p] -> [B, C, h, w]`` for a patch ``grid`` (gh, gw) with ``gh * gw = N``."""
        b, n, d = patches.shape
        gh, gw = grid
        if n != gh * gw or d != self.patch_dim:
            raise ShowoError(
                f"patches {tuple(patches.shape)} do not fill a {gh}x{gw} grid of {self.patch_dim}"
            )
        p, c = self.patch_size, self.latent_channels
        x = patches.reshape(b, gh, gw, c, p, p).permute(0, 3, 1, 4, 2, 5)
        return x.reshape(b, c, gh * p, gw * p)

    def timestep_embedding(self, t: torch.Tensor) -> torch.Tensor:
        """``t [B]`` (any float scale of the scheduler, 0 = clean) -> ``[B, H]``."""
        features = self.time_proj(t.reshape(-1)).to(self.patch_embed.weight.dtype)
        return self.time_embed(features)

    def embed(self, patches: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``[B, N, C*p*p]`` patches at timesteps ``t [B]`` -> input embeddings ``[B, N, H]``."""
        x = self.patch_embed(patches.to(self.patch_embed.weight.dtype))
        return x + self.timestep_embedding(t).unsqueeze(1)

    def output(self, hidden: torch.Tensor) -> torch.Tensor:
        """Final hidden states ``[..., H]`` -> patch predictions ``[..., C*p*p]`` (float32)."""
        return self.proj_out(self.norm(hidden)).float()
