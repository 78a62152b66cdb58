"""Classifier-free guidance as Show-o applies it, shared by every image sampler.

The official formula: docs/official-differences.md#sampling.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def cfg_logits(cond: torch.Tensor, uncond: torch.Tensor, guidance: float) -> torch.Tensor:
    """MUSE-style guidance on raw logits: (1+w)*cond - w*uncond (not uncond + w*(cond-uncond))."""
    return (1.0 + guidance) * cond - guidance * uncond


def guided_rows(prompter, prompts: Sequence[str], image_ids: torch.Tensor, guidance: float) -> torch.Tensor:
    """The t2i generation rows of `prompts`, followed (when `guidance` > 0) by the unconditional rows: the
    empty prompt with the same image ids (official)."""
    ids = prompter.t2i_gen(list(prompts), image_ids)
    if guidance > 0:
        ids = torch.cat([ids, prompter.t2i_gen([""] * len(prompts), image_ids)])
    return ids


def guided(logits: torch.Tensor, batch: int, guidance: float) -> torch.Tensor:
    """`cfg_logits` of the first `batch` rows against the rest; the logits unchanged without guidance."""
    if guidance > 0:
        return cfg_logits(logits[:batch], logits[batch:], guidance)
    return logits
