"""The image objective switch (recipe ``objective.image``): MaskGIT-style MTP (Show-o) or autoregressive.

``mtp``: image tokens are masked by ``showo.masking`` and predicted in place under the omni-attention mask
(bidirectional inside the image). ``ar`` (Chameleon / LlamaGen style): image tokens stay unmasked, attention
is causal everywhere, and each image token (then EOI) is predicted from the previous position. The same
prompting layouts serve both; only the image labels, the attention task and the loss rule change.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from showo.errors import ShowoError
from showo.masking import mask_image_tokens
from showo.prompting import Prompter

IMAGE_OBJECTIVES = ("mtp", "ar")
# Tasks whose images the objective changes; the text-only/understanding tasks keep their own masks.
IMAGE_TASKS = ("t2i", "c2i", "mixed")


def check_objective(objective: str) -> str:
    if objective not in IMAGE_OBJECTIVES:
        raise ShowoError(f"objective.image must be one of {', '.join(IMAGE_OBJECTIVES)}, got {objective!r}")
    return objective


def attention_task(task: str, objective: str = "mtp") -> str:
    """The ``omni_attention_mask`` task for a prompting task under an image objective."""
    if check_objective(objective) == "ar" and task in IMAGE_TASKS:
        return "ar"
    return task


def t2i_batch(
    prompter: Prompter,
    texts: Sequence[str],
    image_ids: torch.Tensor,
    objective: str = "mtp",
    schedule: str = "cosine",
    generator: torch.Generator | None = None,
    min_mask_rate: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """t2i (or c2i) rows for either objective; ``image_ids`` are unmasked unified ids ``[B, N]``.

    ``generator`` drives the mask draws and the CFG dropout (it must live on ``image_ids``' device, the CPU
    in the data path). Pass the result to ``showo_loss(..., image_objective=objective)``.
    """
    if check_objective(objective) == "mtp":
        masked, labels = mask_image_tokens(
            image_ids, prompter.vocab.mask_id, schedule, generator, min_mask_rate
        )
        return prompter.t2i(texts, masked, labels, generator)
    return prompter.t2i(texts, image_ids, image_ids.clone(), generator)
