"""Reconstruction and codebook metrics shared by training, evaluation and benchmarks."""

from __future__ import annotations

import torch


def psnr(reconstruction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB of [-1,1] images (reconstruction clamped first): 10 log10(2^2 / MSE)."""
    err = (reconstruction.detach().float().clamp(-1, 1) - target.detach().float()).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(4.0 / err.clamp_min(1e-10))


def code_histogram(codes: torch.Tensor, codebook_size: int) -> torch.Tensor:
    """Counts of every code id (int64 [K]) over a batch of code sequences."""
    return torch.bincount(codes.flatten().long(), minlength=codebook_size)


def codebook_stats(counts: torch.Tensor) -> tuple[float, float]:
    """(usage, perplexity) from a code histogram: the fraction of codes seen, and exp(entropy)."""
    counts = counts.double()
    total = counts.sum()
    if total == 0:
        return 0.0, 0.0
    p = counts[counts > 0] / total
    return float((counts > 0).double().mean()), float(torch.exp(-(p * p.log()).sum()))
