"""The `kind: vae` recipe: a diffusers `AutoencoderKL` trained like the image tokenizer.

Run, optimizer, trainer and data sections are the tokenizer's (the same embedded photos/shapes/digits
mixture and held-out photos), so cadences, precision and data weights mean the same thing in both.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from omegaconf import MISSING

from showo.errors import ShowoError
from showo.recipe.schema import OptimConfig, RunConfig, TrainerConfig
from showo.tokenizer.config import (
    ExportedRun,
    TokenizerDataConfig,
    check_autoencoder_loss,
    check_autoencoder_recipe,
)
from showo.vae.model import MAX_LATENT_CHANNELS, MAX_LAYERS, MAX_LEVELS, MAX_WIDTH, vae_kwargs


@dataclass
class VaeModelConfig:
    """Widths and depths of a plain `AutoencoderKL` (one down/up block per width) and its latent scaling."""

    latent_channels: int = 4
    """Channels of the latent (Stable Diffusion's VAE: 4; the Transfusion paper's: 8)."""
    block_out_channels: list[int] = field(default_factory=lambda: [32, 64, 64])
    """One encoder/decoder block per width; `len - 1` stride-2 downsamples (3 widths: factor 4)."""
    layers_per_block: int = 1
    """ResNet layers per encoder block (the decoder has one more, diffusers' convention)."""
    norm_num_groups: int = 8
    """GroupNorm groups; must divide every width (SD's VAE: 32)."""
    mid_block_add_attention: bool = True
    """Self-attention in the middle block at the lowest resolution, as SD's VAE has."""
    scaling_factor: float | None = None
    """Written to the exported config; null: 1 / std of the shifted latents over the data's usage sample,
    measured at the end of training, so the diffusion model sees unit-variance latents."""
    shift_factor: float | None = None
    """Subtracted before scaling (`scaled = (raw - shift) * scale`); null: none, as SD's VAE."""

    def __post_init__(self) -> None:
        self.block_out_channels = list(self.block_out_channels)

    @property
    def downsample_factor(self) -> int:
        return 2 ** (len(self.block_out_channels) - 1)

    def check(self, key: str) -> None:
        widths = self.block_out_channels
        if not 1 <= len(widths) <= MAX_LEVELS or any(not 1 <= w <= MAX_WIDTH for w in widths):
            raise ShowoError(f"{key}.block_out_channels must hold 1..{MAX_LEVELS} widths in 1..{MAX_WIDTH}")
        if self.norm_num_groups <= 0 or any(w % self.norm_num_groups for w in widths):
            raise ShowoError(
                f"{key}.norm_num_groups {self.norm_num_groups} must be positive and divide every width {widths}"
            )
        if not 1 <= self.latent_channels <= MAX_LATENT_CHANNELS:
            raise ShowoError(f"{key}.latent_channels must be in 1..{MAX_LATENT_CHANNELS}")
        if not 1 <= self.layers_per_block <= MAX_LAYERS:
            raise ShowoError(f"{key}.layers_per_block must be in 1..{MAX_LAYERS}")
        if self.scaling_factor is not None and self.scaling_factor <= 0:
            raise ShowoError(
                f"{key}.scaling_factor must be positive (or null: measured), got {self.scaling_factor}"
            )

    def diffusers_kwargs(self, sample_size: int) -> dict[str, Any]:
        """`AutoencoderKL` arguments (scaling 1.0 until measured, when the recipe leaves it null)."""
        return vae_kwargs(
            self.latent_channels,
            self.block_out_channels,
            self.layers_per_block,
            self.norm_num_groups,
            mid_block_add_attention=self.mid_block_add_attention,
            sample_size=sample_size,
            scaling_factor=1.0 if self.scaling_factor is None else self.scaling_factor,
            shift_factor=self.shift_factor,
        )


@dataclass
class VaeLossConfig:
    """Loss weights: reconstruction, the KL of the posterior to N(0, I), and an optional patch-GAN."""

    l1: float = 1.0
    """Weight of the mean absolute pixel error."""
    l2: float = 1.0
    """Weight of the mean squared pixel error."""
    kl: float = 1.0e-6
    """Weight of the KL per latent element (mean), against the mean pixel errors: small, as in SD's VAE
    training, it only keeps the latents bounded and smooth."""
    gan: float = 0.0
    """Weight of the generator's hinge loss against the patch discriminator; 0 disables the GAN."""
    gan_start_step: int = 0
    """Global step at which the discriminator and the adversarial term switch on."""
    disc_channels: int = 64
    """Width of the first discriminator layer."""
    disc_layers: int = 3
    """Stride-2 layers of the patch discriminator."""
    disc_lr: float | None = None
    """Discriminator learning rate (defaults to optim.lr)."""

    def check(self, key: str) -> None:
        check_autoencoder_loss(self, key, ("l1", "l2", "kl", "gan"))


@dataclass
class VaeRecipe(ExportedRun):
    """Everything a VAE training run needs (kind `vae`)."""

    export_name = "vae"

    kind: Literal["vae"] = "vae"
    """Recipe kind."""
    base: str | None = None
    """Recipe this one extends, relative to this file."""
    resume: str = "auto"
    """auto (continue from the run's last checkpoint if any), never, or a checkpoint path."""
    export_dir: str | None = None
    """Where the trained VAE is saved in the diffusers layout for `load_vae` (default `<run_dir>/vae`)."""
    reuse_export: bool = True
    """Skip training when `export_dir` already holds a VAE trained from this same recipe."""
    max_minutes: float | None = None
    """Wall-clock cap on training (Lightning `max_time`); the export is written either way."""
    run: RunConfig = field(default_factory=lambda: RunConfig(name=MISSING))
    model: VaeModelConfig = field(default_factory=VaeModelConfig)
    data: TokenizerDataConfig = field(default_factory=TokenizerDataConfig)
    loss: VaeLossConfig = field(default_factory=VaeLossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)

    def check(self, key: str) -> None:
        check_autoencoder_recipe(self, "VAE")
