"""MaskGIT's random draws: per-position code sampling and confidence-based remasking with Gumbel noise.

Every draw uses the caller's generator on the generator's own device, so a seeded run is reproducible
and the cached and recomputing samplers consume the same random numbers in the same order.
"""

from __future__ import annotations

from typing import Literal

import torch

from showo.errors import ShowoError

Draw = Literal["inverse_cdf", "multinomial"]
DRAWS: tuple[str, ...] = ("inverse_cdf", "multinomial")


def _device_of(generator: torch.Generator | None, fallback: torch.device) -> torch.device:
    return generator.device if generator is not None else fallback


def gumbel_noise(shape: torch.Size, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """-log(-log U) with U drawn from `generator`, both logs clamped at 1e-20."""
    uniform = torch.rand(shape, generator=generator, device=_device_of(generator, device)).to(device)
    return -torch.log((-torch.log(uniform.clamp_min(1e-20))).clamp_min(1e-20))


def mask_by_random_topk(
    mask_len: torch.Tensor,
    confidence: torch.Tensor,
    temperature: float,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """True at the `mask_len` [B,1] lowest-scoring positions of log(confidence) + temperature * Gumbel.

    Known positions carry confidence +inf, so they are never chosen while mask_len < #unknown.
    """
    noise = gumbel_noise(confidence.shape, generator, confidence.device)
    scores = torch.log(confidence.clamp_min(1e-20)) + temperature * noise
    scores = torch.where(torch.isinf(confidence), confidence, scores)
    cut_off = torch.gather(torch.sort(scores, dim=-1).values, 1, mask_len.long().to(scores.device))
    return scores < cut_off


def sample_codes(probs: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """One categorical draw per position of probs [B,N,K] -> LongTensor [B,N], by inverse CDF.

    One uniform per position (torch.multinomial draws K exponentials per row: at K = 8192 that was a
    quarter of a cached MaskGIT step on CPU). The float64 CDF is searched for the first entry above
    u * total, so a zero-probability code is never returned.
    """
    batch, num, size = probs.shape
    cdf = probs.reshape(batch * num, size).double().cumsum(dim=-1)
    uniform = torch.rand(batch * num, 1, generator=generator, device=_device_of(generator, probs.device))
    target = uniform.to(cdf.device, torch.float64) * cdf[:, -1:]
    return torch.searchsorted(cdf, target, right=True).clamp_max(size - 1).view(batch, num)


def check_draw(draw: str) -> None:
    if draw not in DRAWS:
        raise ShowoError(f"unknown code draw {draw!r} (expected one of {', '.join(DRAWS)})")


def draw_codes(
    probs: torch.Tensor, unknown: torch.Tensor, generator: torch.Generator | None, draw: Draw = "inverse_cdf"
) -> torch.Tensor:
    """One code for each True entry of `unknown` [B,N] from its row of probs [U,K] -> LongTensor [U].

    "inverse_cdf" (default): `sample_codes`, one uniform per still-masked position. "multinomial": the
    official draw, one `torch.multinomial` over all B*N grid positions in raster order, so a seeded run
    consumes the generator exactly as the official sampler does. Known positions get a uniform row and
    their draws are dropped: which random numbers a row receives does not depend on any row's values
    (docs/official-differences.md#sampling).
    """
    check_draw(draw)
    if draw == "inverse_cdf":
        return sample_codes(probs.unsqueeze(0), generator)[0]
    flat = unknown.flatten()
    full = probs.new_full((flat.numel(), probs.shape[-1]), 1.0)
    full[flat] = probs
    device = _device_of(generator, probs.device)
    picked = torch.multinomial(full.to(device), 1, generator=generator).squeeze(-1)
    return picked[flat.to(device)].to(probs.device)
