"""Training-time masking of image tokens for the MTP objective (docs/official-differences.md#masking).

Per image: t ~ U(0, 1), rate = schedule(t) (cosine by default, clipped below at ``min_mask_rate``),
k = max(1, round(N * rate)), and exactly k positions are masked: the slots j where entry j of the argsort
of fresh uniform noise is below k (the official rule). Masked positions become ``mask_id`` in the input and keep their id in the labels;
every other label is -100. All draws come from the passed ``torch.Generator`` (on the ids' device).
"""

from __future__ import annotations

import math

import torch

from showo.errors import ShowoError

SCHEDULES = ("cosine", "linear", "pow2", "pow3", "sigmoid")


def mask_ratio(t: torch.Tensor | float, schedule: str = "cosine") -> torch.Tensor:
    """Fraction of tokens masked at time t in [0, 1] (1 at t=0, 0 or ~0 at t=1).

    ``cosine``: cos(pi t / 2); ``linear``: 1 - t clamped to [1e-6, 1]; ``powK``: 1 - t^K; ``sigmoid``: the
    normalised sigmoid schedule (start -3, end 3, tau 1, clipped to [1e-9, 1]).
    """
    t = torch.as_tensor(t, dtype=torch.float32)
    if schedule == "cosine":
        return torch.cos(t * math.pi / 2)
    if schedule == "linear":
        return (1 - t).clamp(1e-6, 1.0)
    if schedule.startswith("pow") and schedule[3:].replace(".", "", 1).isdigit():
        return 1 - t ** float(schedule[3:])
    if schedule == "sigmoid":
        start, end = -3.0, 3.0
        v_start, v_end = 1 / (1 + math.exp(-start)), 1 / (1 + math.exp(-end))
        out = (v_end - torch.sigmoid(t * (end - start) + start)) / (v_end - v_start)
        return out.clamp(1e-9, 1.0)
    raise ShowoError(f"unknown mask schedule {schedule!r}; expected one of {', '.join(SCHEDULES)} (or powK)")


def num_masked(
    t: torch.Tensor, num_tokens: int, schedule: str = "cosine", min_mask_rate: float = 0.0
) -> torch.Tensor:
    """k per image: round(N * max(rate, min_mask_rate)), at least 1."""
    rate = mask_ratio(t, schedule).clamp(min=min_mask_rate)
    return torch.round(num_tokens * rate).long().clamp(min=1)


def mask_image_tokens(
    image_ids: torch.Tensor,
    mask_id: int,
    schedule: str = "cosine",
    generator: torch.Generator | None = None,
    min_mask_rate: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``image_ids [B, N]`` (unified ids) -> (masked ids, labels with -100 at unmasked positions)."""
    if image_ids.dim() != 2:
        raise ShowoError(f"image_ids must be [B, N], got shape {tuple(image_ids.shape)}")
    batch, n = image_ids.shape
    device = image_ids.device
    t = torch.rand(batch, generator=generator, device=device)
    k = num_masked(t, n, schedule, min_mask_rate).to(device)
    noise = torch.rand(batch, n, generator=generator, device=device)
    masked = noise.argsort(dim=-1) < k[:, None]  # a permutation: exactly k slots hold a value below k
    ids = torch.where(masked, torch.full_like(image_ids, mask_id), image_ids)
    labels = torch.where(masked, image_ids, torch.full_like(image_ids, -100))
    return ids, labels
