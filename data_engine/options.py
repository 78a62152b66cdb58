"""What `showo-data build` accepts, checked without torch (a finished build is answered without it,
see `data_engine.finished`)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from showo.errors import ShowoError

DEDUP_MODES = ("none", "sha1", "codes")


@dataclass
class BuildOptions:
    """Everything `showo-data build` accepts (see `data_engine.cli` for the flags)."""

    source: str
    out: str
    tokenizer: str | None = None
    vae: str | None = None
    resolution: int = 256
    recaptioner: str = "keep"
    caption_prompt: str | None = None
    caption_max_tokens: int = 48
    shard_size: int = 1000
    name: str | None = None
    rank: int | None = None
    world_size: int | None = None
    batch_size: int = 32
    workers: int | None = None
    dedup: str = "sha1"
    min_size: int = 32
    max_pixels: int | None = None
    max_caption_chars: int = 8192
    image_root: str | None = None
    split: str = "train"
    limit: int | None = None
    progress: bool = True
    device: str = "auto"
    threads: int | None = None
    verify: bool = False


# flag: (smallest, largest or None); sizes past these are typos that would exhaust memory or processes
LIMITS = {
    "shard_size": (1, None),
    "batch_size": (1, 65536),
    "workers": (0, 256),
    "threads": (1, 1024),
    "resolution": (1, 4096),
    "limit": (1, None),
    "min_size": (0, None),
    "max_caption_chars": (1, None),
    "caption_max_tokens": (1, 4096),
}


def check_numbers(options: BuildOptions) -> None:
    """Range-check the numeric flags before anything is opened or allocated."""
    for name, (low, high) in LIMITS.items():
        value = getattr(options, name)
        if value is None:
            continue
        if value < low or (high is not None and value > high):
            bound = f"in {low}..{high}" if high is not None else f"at least {low}"
            raise ShowoError(f"--{name.replace('_', '-')} {value} must be {bound}")


def check_encoder(options: BuildOptions) -> None:
    """Exactly one image encoder: an image tokenizer (codes) or a VAE (latents), and a dedup mode that
    means something for what it writes."""
    if options.tokenizer is not None and options.vae is not None:
        raise ShowoError(
            "--vae and --image-tokenizer/--tokenizer are mutually exclusive: a build stores codes or latents"
        )
    if options.tokenizer is None and options.vae is None:
        raise ShowoError(
            "--tokenizer PATH is required (an image tokenizer directory or checkpoint, for codes), "
            "or --vae PATH (a diffusers VAE directory, for latents)"
        )
    if options.vae is not None and options.dedup == "codes":
        raise ShowoError(
            "--dedup codes compares code sequences; a --vae build stores latents: use sha1 or none"
        )


def _env_int(names: tuple[str, str], default: int) -> int:
    env = os.environ
    name = next((n for n in names if n in env), None)
    if name is None:
        return default
    try:
        return int(env[name])
    except ValueError:
        raise ShowoError(f"environment variable {name}={env[name][:40]!r} is not an integer") from None


def partition(rank: int | None, world_size: int | None) -> tuple[int, int]:
    """Explicit `--rank/--world-size`, else torchrun's RANK/WORLD_SIZE, else SLURM's, else (0, 1)."""
    if world_size is None:
        world_size = _env_int(("WORLD_SIZE", "SLURM_NTASKS"), 1)
    if rank is None:
        rank = _env_int(("RANK", "SLURM_PROCID"), 0)
    if world_size < 1 or not 0 <= rank < world_size:
        raise ShowoError(f"partition rank {rank} is not within world size {world_size}")
    return rank, world_size
