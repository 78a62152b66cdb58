"""The image-objective interface: one object owns how a way of generating images trains and samples.

An objective owns, in one place: how image rows are prepared for training (`prepare`, `mixed_rows`), the
attention rule of its image block (`attention`), its targets and its loss from the final hidden states
(`image_targets`, `loss`: nothing here assumes cross-entropy over the vocabulary), and its sampler with the
sampler's typed options (`sampler`, `options_type`, `generate`, `sample_frame`). Objectives are found by name
through `showo.objectives.get` (`register` adds one); the recipe's `objective` section is the objective's
`config_type`, and the same settings are written into every checkpoint (`to_dict`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import torch

from showo.errors import ShowoError


@dataclass
class ObjectiveConfig:
    """How image tokens are learned (the recipe's `objective` section); each objective extends it."""

    image: str = "mtp"
    """The image objective: mtp (MaskGIT masked-token prediction, Show-o) or ar (causal next-token over codes)."""
    cond_dropout_prob: float = 0.1
    """Probability of replacing a t2i prompt by the null prompt, for classifier-free guidance."""

    def check(self, key: str) -> None:
        if not 0.0 <= self.cond_dropout_prob <= 1.0:
            raise ShowoError(f"{key}.cond_dropout_prob must be in [0, 1], got {self.cond_dropout_prob}")


@dataclass
class SamplerOptions:
    """Typed settings of an objective's sampler; each sampler extends it."""

    guidance: float = 0.0
    """Classifier-free guidance scale w (0 disables the unconditional rows)."""
    temperature: float = 1.0
    """The sampler's temperature (its meaning is the sampler's, see its options class)."""

    def check(self) -> None:
        if self.guidance < 0:
            raise ShowoError(f"guidance must be >= 0, got {self.guidance}")


class ImageObjective(ABC):
    """One way the transformer learns and generates images. Subclasses set the class attributes."""

    name: ClassVar[str]
    """The recipe's `objective.image` value and the name recorded in checkpoints."""
    config_type: ClassVar[type[ObjectiveConfig]]
    sampler: ClassVar[str]
    """The name of the one sampler this objective serves (`showo generate --sampler`)."""
    options_type: ClassVar[type[SamplerOptions]]

    def __init__(self, config: ObjectiveConfig | None = None) -> None:
        self.config = config if config is not None else self.config_type(image=self.name)

    def to_dict(self) -> dict[str, Any]:
        """The objective and its settings, as written into checkpoints (`config.json` `objective`)."""
        return asdict(self.config)

    # training -------------------------------------------------------------------------------------------
    @abstractmethod
    def attention(self, task: str) -> str:
        """The `showo.attention` rule for rows of `task` under this objective."""

    @abstractmethod
    def prepare(
        self,
        task: str,
        ids: torch.Tensor,
        labels: torch.Tensor,
        generator: torch.Generator,
        num_image_tokens: int,
        vocab: Any,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Training rows of `task` as the model sees them (device side, seeded by `generator`)."""

    def t2i_rows(
        self,
        prompter: Any,
        texts: Sequence[str],
        image_ids: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """t2i (or c2i) rows from unmasked unified image ids [B, N], prepared for this objective.

        ``generator`` drives the image preparation, then the classifier-free-guidance dropout.
        """
        vocab = prompter.vocab
        images, labels = self.prepare(
            "t2i", image_ids, image_ids.clone(), generator, image_ids.shape[1], vocab
        )
        return prompter.t2i(texts, images, labels, generator)

    @abstractmethod
    def mixed_rows(self, prompter: Any, frames: Sequence[torch.Tensor], captions: Sequence[Sequence[str]]):
        """Interleaved caption/frame rows with labels for this objective (data side, unmasked frames)."""

    @abstractmethod
    def image_targets(self, labels: torch.Tensor, max_text_len: int) -> torch.Tensor:
        """Targets of a generation row (t2i/c2i) placed at the position that predicts them (-100 elsewhere)."""

    @abstractmethod
    def loss(self, labelled: Any, model: Any, coeffs: Mapping[str, float]) -> tuple[dict, dict]:
        """(losses, metrics) from `showo.losses.Labelled` final hidden states at the labelled positions."""

    # sampling -------------------------------------------------------------------------------------------
    def options(self, **given: Any) -> SamplerOptions:
        """This sampler's options from the given ones (None = default); one it does not take is an error."""
        fields = self.options_type.__dataclass_fields__
        extra = sorted(k for k, v in given.items() if v is not None and k not in fields)
        if extra:
            raise ShowoError(
                f"the {self.sampler} sampler (objective {self.name}) takes no {extra[0].replace('_', '-')}"
                f" option; it takes {', '.join(sorted(fields))}"
            )
        options = self.options_type(**{k: v for k, v in given.items() if v is not None})
        options.check()
        return options

    def options_from(self, settings: Mapping[str, Any]) -> SamplerOptions:
        """Options from a record of settings for several samplers (pinned eval settings, preview settings):
        this sampler takes the ones it has and leaves the rest."""
        fields = self.options_type.__dataclass_fields__
        return self.options(**{k: v for k, v in settings.items() if k in fields})

    def check_sampler(self, sampler: str | None) -> str:
        """The sampler to use: this objective's; asking for another is a one-line error."""
        if sampler is not None and sampler != self.sampler:
            raise ShowoError(
                f"sampler {sampler!r} cannot sample a checkpoint trained with the {self.name} objective"
                f" (its sampler is {self.sampler!r})"
            )
        return self.sampler

    @abstractmethod
    def generate(
        self,
        model: Any,
        prompter: Any,
        prompts: Sequence[str],
        options: SamplerOptions,
        generator: torch.Generator | None = None,
        progress: bool = False,
    ) -> torch.Tensor:
        """Raw codes [B, N] for text prompts."""

    @abstractmethod
    def sample_frame(
        self, sequence: Any, options: SamplerOptions, generator: torch.Generator | None
    ) -> torch.Tensor:
        """One image appended to a mixed-modality `showo.sampling.mixed.Sequence`; returns its codes [N]."""


class CodeObjective(ImageObjective):
    """An objective whose image targets are codes of the vocabulary: cross-entropy through the LM head."""

    def loss(self, labelled: Any, model: Any, coeffs: Mapping[str, float]) -> tuple[dict, dict]:
        from showo.losses import labelled_loss

        scored = labelled.with_head(model.llm.lm_head)
        return labelled_loss(scored, coeffs), image_accuracy(scored, model.vocab)


def image_accuracy(scored: Any, vocab: Any) -> dict[str, torch.Tensor]:
    """Accuracy on the image-code targets of each image task (the masked ones under MTP)."""
    from showo.tasks import IMAGE_TASKS

    acc = {}
    for task, (logits, targets) in scored.by_task().items():
        image = vocab.is_image(targets)
        if task in IMAGE_TASKS and image.any():
            acc[f"acc_{task}"] = (logits[image].detach().argmax(-1) == targets[image]).float().mean()
    return acc
