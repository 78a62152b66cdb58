"""Classifier-free guidance as Show-o applies it, shared by every image sampler.

The official formula: docs/official-differences.md#sampling.
"""

from __future__ import annotations

import torch


def cfg_logits(cond: torch.Tensor, uncond: torch.Tensor, guidance: float) -> torch.Tensor:
    """MUSE-style guidance on raw logits: (1+w)*cond - w*uncond (not uncond + w*(cond-uncond))."""
    return (1.0 + guidance) * cond - guidance * uncond
