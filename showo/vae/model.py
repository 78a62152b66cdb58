"""The continuous image autoencoder of the diffusion objective: a diffusers `AutoencoderKL` behind one small
interface (`Vae`), loaded from a local diffusers-layout directory or built tiny and random for tests.

Shards store the VAE's raw latents (the posterior mean, deterministic); training scales them with the
VAE's own config, ``scaled = (raw - shift_factor) * scaling_factor``, the convention of diffusers'
pipelines, so a downloaded `stabilityai/sd-vae-ft-ema` (scaling 0.18215, no shift) and our tiny one are
used the same way.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKL
from diffusers.utils import logging as diffusers_logging
from torch import nn

from showo.errors import ShowoError
from showo.safeio import first_line, read_json_object

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"
CLASS_NAME = "AutoencoderKL"

MAX_LEVELS = 8
MAX_WIDTH = 8192
MAX_LATENT_CHANNELS = 256
MAX_LAYERS = 64
"""Bounds on a stranger's config, checked before any module is built (a huge width is not a VAE)."""

TINY_VAE = dict(block_out_channels=(8, 8, 16), layers_per_block=1, norm_num_groups=4, sample_size=64)
"""The test VAE: 3 levels (2 stride-2 downsamples, factor 4: 64 px -> 16x16 latents), a few thousand
parameters, built in milliseconds. Random weights: its latents are arbitrary but deterministic."""


def vae_kwargs(
    latent_channels: int,
    block_out_channels: tuple[int, ...] | list[int],
    layers_per_block: int,
    norm_num_groups: int,
    **extra: Any,
) -> dict[str, Any]:
    """`AutoencoderKL` arguments for a plain encoder/decoder with one down/up block per width."""
    levels = len(block_out_channels)
    return dict(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * levels,
        up_block_types=("UpDecoderBlock2D",) * levels,
        block_out_channels=tuple(block_out_channels),
        layers_per_block=layers_per_block,
        latent_channels=latent_channels,
        norm_num_groups=norm_num_groups,
        **extra,
    )


class Vae(nn.Module):
    """A diffusers `AutoencoderKL` (`.model`) with the few numbers and operations the rest of us need."""

    def __init__(self, model: AutoencoderKL) -> None:
        super().__init__()
        self.model = model

    @property
    def latent_channels(self) -> int:
        return int(self.model.config.latent_channels)

    @property
    def downsample_factor(self) -> int:
        """Pixels per latent side: one stride-2 downsample between consecutive encoder blocks."""
        return 2 ** (len(self.model.config.block_out_channels) - 1)

    @property
    def scaling_factor(self) -> float:
        return float(self.model.config.scaling_factor)

    @property
    def shift_factor(self) -> float:
        """The config's shift, 0.0 when it has none (SD-style VAEs)."""
        shift = self.model.config.shift_factor
        return 0.0 if shift is None else float(shift)

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """Pixels ``[B,3,H,W]`` in [-1,1] -> raw latents ``[B,C,H/f,W/f]`` float32: the posterior's mean
        (deterministic, so a shard's latents do not depend on a random state)."""
        dtype = next(self.model.parameters()).dtype
        return self.model.encode(pixels.to(dtype)).latent_dist.mode().float()

    def decode(self, raw: torch.Tensor) -> torch.Tensor:
        """Raw latents ``[B,C,h,w]`` -> pixels ``[B,3,h*f,w*f]`` float32 clamped to [-1,1]."""
        dtype = next(self.model.parameters()).dtype
        return self.model.decode(raw.to(dtype)).sample.float().clamp(-1, 1)

    def scale(self, raw: torch.Tensor) -> torch.Tensor:
        """Raw latents -> the unit-scale latents a diffusion model is trained on."""
        return (raw - self.shift_factor) * self.scaling_factor

    def unscale(self, scaled: torch.Tensor) -> torch.Tensor:
        """The inverse of `scale`: what `decode` takes."""
        return scaled / self.scaling_factor + self.shift_factor

    def architecture(self) -> dict[str, Any]:
        """The config's public keys (diffusers' bookkeeping such as `_name_or_path` left out)."""
        return {k: v for k, v in self.model.config.items() if not k.startswith("_")}

    def identity(self) -> str:
        """A stable hash of the config and the weights, recorded next to the latents it produced."""
        digest = hashlib.sha256(json.dumps(self.architecture(), sort_keys=True, default=list).encode())
        for key, value in sorted(self.model.state_dict().items()):
            digest.update(key.encode())
            digest.update(str(tuple(value.shape)).encode())
            digest.update(value.detach().float().cpu().contiguous().numpy().tobytes())
        return f"autoencoderkl-{digest.hexdigest()[:16]}"

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write the diffusers layout (config.json + diffusion_pytorch_model.safetensors)."""
        directory = Path(directory)
        self.model.save_pretrained(str(directory), safe_serialization=True)
        return directory


def build_tiny_vae(latent_channels: int = 4, seed: int = 0, **overrides: Any) -> Vae:
    """A random tiny `AutoencoderKL` (64 px -> 16x16 latents, see `TINY_VAE`) with a fixed seed."""
    settings = {**TINY_VAE, **overrides}
    torch.manual_seed(seed)
    return Vae(AutoencoderKL(**vae_kwargs(latent_channels, **settings))).eval()


def _check_config(data: dict[str, Any], config_path: Path) -> None:
    """The class and the sizes of a VAE config, bounded before diffusers builds anything."""
    name = data.get("_class_name")
    if name != CLASS_NAME:
        raise ShowoError(f"{config_path} describes {str(name)[:60]!r}, not a diffusers {CLASS_NAME}")
    widths = data.get("block_out_channels", [64])
    if (
        not isinstance(widths, list)
        or not 1 <= len(widths) <= MAX_LEVELS
        or any(type(w) is not int or not 1 <= w <= MAX_WIDTH for w in widths)
    ):
        raise ShowoError(
            f"{config_path}: block_out_channels must be 1..{MAX_LEVELS} integers in 1..{MAX_WIDTH}"
        )
    for key, high in (("latent_channels", MAX_LATENT_CHANNELS), ("layers_per_block", MAX_LAYERS)):
        value = data.get(key, 1)
        if type(value) is not int or not 1 <= value <= high:
            raise ShowoError(f"{config_path}: {key} must be an integer in 1..{high}, got {str(value)[:40]!r}")
    for key in ("scaling_factor", "shift_factor"):
        value = data.get(key, 1.0)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ShowoError(f"{config_path}: {key} must be a number, got {str(value)[:40]!r}")
    if data.get("scaling_factor", 1.0) == 0:
        raise ShowoError(f"{config_path}: scaling_factor must not be 0")


def load_vae(path: str | Path) -> Vae:
    """A local diffusers-layout `AutoencoderKL` directory, in eval mode; nothing is downloaded."""
    path = Path(path)
    if not path.exists():
        raise ShowoError(f"VAE not found: {path}")
    if not path.is_dir():
        raise ShowoError(
            f"VAE {path} is a file; expected a diffusers directory ({CONFIG_NAME} + {WEIGHTS_NAME})"
        )
    config_path = path / CONFIG_NAME
    if not config_path.is_file():
        raise ShowoError(f"VAE directory {path} has no {CONFIG_NAME} (not a diffusers model directory)")
    _check_config(read_json_object(config_path, "VAE config"), config_path)
    weights = path / WEIGHTS_NAME
    if not weights.is_file():
        raise ShowoError(f"VAE directory {path} has no {WEIGHTS_NAME} (safetensors weights are required)")
    quiet = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()  # its missing-weights warning spans lines; ours is one
    try:
        model, info = AutoencoderKL.from_pretrained(
            str(path),
            use_safetensors=True,
            local_files_only=True,
            low_cpu_mem_usage=False,  # a plain load: no `accelerate`, and diffusers reports missing keys
            output_loading_info=True,
        )
    except Exception as err:  # noqa: BLE001  (diffusers raises OS, value and safetensors errors)
        raise ShowoError(f"cannot load the VAE in {path}: {first_line(err)}") from None
    finally:
        diffusers_logging.set_verbosity(quiet)
    for kind in ("missing_keys", "unexpected_keys", "mismatched_keys"):
        keys = [str(k) for k in info.get(kind) or []]
        if keys:  # diffusers would leave missing weights random: not the VAE the config describes
            shown = ", ".join(keys[:3]) + (" ..." if len(keys) > 3 else "")
            raise ShowoError(
                f"VAE weights {weights} do not match its config: {kind.replace('_', ' ')} ({len(keys)}): {shown}"
            )
    return Vae(model).eval()
