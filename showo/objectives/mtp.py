"""MTP (Show-o): image tokens are masked with a schedule and predicted in place; sampled with MaskGIT.

Training rows mask every image of a row (t2i/c2i: one, mixed: one per frame) by `showo.masking`, with
labels only where masked; the image block attends bidirectionally inside itself (omni-attention); the
targets sit at positions ``M+1 ..`` of a generation row with no shift (SOI and EOI carry identity targets, as
the official code does); the loss is cross-entropy through the LM head.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch

from showo.errors import ShowoError
from showo.losses import IGNORE
from showo.objectives.base import CodeObjective, ObjectiveConfig, SamplerOptions
from showo.tasks import IMAGE_TASKS


@dataclass
class MTPConfig(ObjectiveConfig):
    """Masked-token prediction (Show-o)."""

    image: str = "mtp"
    """The image objective: mtp (MaskGIT masked-token prediction, Show-o) or ar (causal next-token over codes)."""
    mask_schedule: Literal["cosine", "linear", "pow2", "pow3", "sigmoid"] = "cosine"
    """Mask-ratio schedule r(t) for mtp training (official: cosine)."""
    min_mask_rate: float = 0.0
    """Lower bound on the sampled mask ratio (official 0.0)."""

    def check(self, key: str) -> None:
        super().check(key)
        if not 0.0 <= self.min_mask_rate < 1.0:
            raise ShowoError(f"{key}.min_mask_rate must be in [0, 1), got {self.min_mask_rate}")


@dataclass
class MaskGITOptions(SamplerOptions):
    """MaskGIT parallel decoding (`showo.sampling.maskgit`); `temperature` is tau0 of the remasking noise."""

    steps: int = 18
    """Decoding steps T."""
    schedule: str = "cosine"
    """Mask schedule of the decoding steps: cosine | linear | pow2 | pow3 | sigmoid."""
    temperature_schedule: str = "maskgit"
    """maskgit: tau0*(1-t); official: the compounding product of the official sampler."""
    draw: str = "inverse_cdf"
    """Code draw: inverse_cdf (ours) or multinomial (the official sampler's draws for a seed)."""

    def check(self) -> None:
        from showo.masking import mask_ratio
        from showo.sampling.maskgit import check_settings

        check_settings(self.steps, self.guidance, self.temperature_schedule, self.draw)
        mask_ratio(0.5, self.schedule)


class MTPObjective(CodeObjective):
    name = "mtp"
    config_type = MTPConfig
    sampler = "maskgit"
    options_type = MaskGITOptions
    config: MTPConfig

    def attention(self, task: str) -> str:
        return task

    def prepare(self, task, ids, labels, generator, num_image_tokens, vocab):
        """Mask every image of the rows, each on its own; labels only where masked."""
        from showo.masking import mask_image_tokens

        if task not in IMAGE_TASKS:
            return ids, labels
        where = vocab.is_image(ids)
        frames = ids[where].view(-1, num_image_tokens)
        masked, frame_labels = mask_image_tokens(
            frames, vocab.mask_id, self.config.mask_schedule, generator, self.config.min_mask_rate
        )
        ids, labels = ids.clone(), labels.clone()
        ids[where] = masked.flatten()
        labels[where] = frame_labels.flatten()
        return ids, labels

    def mixed_rows(self, prompter, frames, captions):
        return prompter.mixed(frames, captions, labels=frames)

    def image_targets(self, labels: torch.Tensor, max_text_len: int) -> torch.Tensor:
        out = torch.full_like(labels, IGNORE)
        out[:, max_text_len + 1 :] = labels[:, max_text_len + 1 :]
        return out

    def generate(self, model, prompter, prompts: Sequence[str], options, generator=None, progress=False):
        from showo.sampling import maskgit

        return maskgit.generate(
            model, prompter, prompts, generator=generator, progress=progress, **asdict(options)
        )

    def sample_frame(self, sequence: Any, options, generator):
        return sequence.masked_frame(generator, **asdict(options))
