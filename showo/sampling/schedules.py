"""MaskGIT step bookkeeping: how many tokens stay masked after each step, and the Gumbel temperature.

The counts are computed in float32 exactly as the official sampler does, so that N=256, T=18 gives
255, 252, ..., 22, 1; float64 would give 128 instead of 127 at step 12 (cos(pi/3) rounds below 0.5).
The official rules: docs/official-differences.md#sampling.
"""

from __future__ import annotations

import math

import torch

from showo.errors import ShowoError
from showo.masking import mask_ratio

TEMPERATURE_SCHEDULES = ("maskgit", "official")


def remaining_masked(num_tokens: int, step: int, steps: int, schedule: str = "cosine") -> int:
    """floor(N * schedule((step+1)/T)) in float32: the uncapped number of tokens to re-mask after `step`."""
    ratio = torch.tensor((step + 1) / steps, dtype=torch.float32)
    return int(torch.floor(num_tokens * mask_ratio(ratio, schedule)).item())


def mask_len(
    num_tokens: int, step: int, steps: int, unknown: torch.Tensor, schedule: str = "cosine"
) -> torch.Tensor:
    """Per-row re-mask count, clamped to [1, #unknown - 1] so every step reveals at least one token."""
    target = remaining_masked(num_tokens, step, steps, schedule)
    return torch.clamp(torch.clamp(unknown - 1, max=target), min=1)


def remaining_counts(num_tokens: int, steps: int, schedule: str = "cosine") -> list[int]:
    """Masked-token count left after each step when decoding from a fully masked grid."""
    unknown = torch.tensor([num_tokens])
    counts = []
    for step in range(steps):
        unknown = mask_len(num_tokens, step, steps, unknown, schedule)
        counts.append(int(unknown.item()))
    return counts


def choice_temperature(tau0: float, step: int, steps: int, schedule: str = "maskgit") -> float:
    """Gumbel temperature at `step`: MaskGIT's tau0*(1-ratio), or the official compounding product."""
    if schedule == "maskgit":
        return tau0 * (1.0 - (step + 1) / steps)
    if schedule == "official":
        return tau0 * math.prod(1.0 - (j + 1) / steps for j in range(step + 1))
    raise ShowoError(f"unknown temperature schedule {schedule!r} (expected one of {TEMPERATURE_SCHEDULES})")
