"""AR (Chameleon / LlamaGen style): image codes are predicted left to right; sampled token by token.

Training rows keep their image tokens; every image block attends causally (the `causal` rule); each image
token and then EOI is predicted from the position before it (logits at ``M+1 .. L-2`` predict labels at
``M+2 .. L-1`` of a generation row); the loss is cross-entropy through the LM head.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from showo.losses import IGNORE
from showo.objectives.base import CodeObjective, ObjectiveConfig, SamplerOptions
from showo.tasks import IMAGE_TASKS


@dataclass
class ARConfig(ObjectiveConfig):
    """Autoregressive next-token prediction over image codes."""

    image: str = "ar"
    """The image objective: mtp (MaskGIT masked-token prediction, Show-o) or ar (causal next-token over codes)."""


@dataclass
class ARSamplerOptions(SamplerOptions):
    """Token-by-token sampling (`showo.sampling.ar`); `temperature` scales the code logits (0 = greedy)."""

    top_k: int | None = None
    """Keep only the k most likely codes (None: all)."""
    top_p: float | None = None
    """Keep the smallest set of codes with probability mass >= p (None: all)."""

    def check(self) -> None:
        from showo.sampling.next_token import check_sampling

        super().check()
        check_sampling(self.temperature, self.top_k, self.top_p)


class ARObjective(CodeObjective):
    name = "ar"
    config_type = ARConfig
    sampler = "ar"
    options_type = ARSamplerOptions

    def attention(self, task: str) -> str:
        return "causal" if task in IMAGE_TASKS else task

    def prepare(self, task, ids, labels, generator, num_image_tokens, vocab):
        return ids, labels

    def mixed_rows(self, prompter, frames, captions):
        return prompter.mixed(frames, captions, next_token_images=True)

    def image_targets(self, labels: torch.Tensor, max_text_len: int) -> torch.Tensor:
        out = torch.full_like(labels, IGNORE)
        out[:, max_text_len + 1 : -1] = labels[:, max_text_len + 2 :]
        return out

    def generate(self, model, prompter, prompts: Sequence[str], options, generator=None, progress=False):
        from showo.sampling import ar

        return ar.generate(
            model,
            prompter,
            prompts,
            options.guidance,
            options.temperature,
            options.top_k,
            options.top_p,
            generator=generator,
            progress=progress,
        )

    def sample_frame(self, sequence: Any, options, generator):
        return sequence.causal_frame(generator, options.temperature, options.top_k, options.top_p)
