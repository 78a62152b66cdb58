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

import numpy as np
import torch

from showo.errors import ShowoError

IMAGE_MEMBERS = {"codes": "codes.npy", "latents": "latents.npy"}
"""Image format -> the shard member holding it (docs/interfaces.md, Shards)."""


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
class Rows:
    """One task's training rows as the transformer sees them (`ImageObjective.training_rows`)."""

    ids: torch.Tensor
    labels: torch.Tensor
    image_embeds: torch.Tensor | None = None
    """``[K, H]`` input embeddings of the K image positions of these rows in row-major order (None: the ids'
    own embeddings, as for image codes)."""
    image_values: torch.Tensor | None = None
    """Continuous targets ``[K', D]`` of the labelled image positions, in the order `gather_labelled` keeps
    them (None: the targets are the labels)."""


def sample_field(sample: dict, name: str, task: str) -> Any:
    """A member of a shard sample, or a one-line error naming the shard, the sample and the stream."""
    if name not in sample:
        raise ShowoError(
            f"{sample.get('__url__', '?')}: sample {sample.get('__key__')!r} has no {name} for the {task} stream"
        )
    return sample[name]


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
    image_format: ClassVar[str] = "codes"
    """What the shards hold for this objective's images: ``codes`` (`codes.npy`) or ``latents`` (`latents.npy`)."""

    def __init__(self, config: ObjectiveConfig | None = None) -> None:
        self.config = config if config is not None else self.config_type(image=self.name)

    def to_dict(self) -> dict[str, Any]:
        """The objective and its settings, as written into checkpoints (`config.json` `objective`)."""
        return asdict(self.config)

    # data -----------------------------------------------------------------------------------------------
    def check_image_member(self, sample: dict, task: str) -> Any:
        """The sample's image member for this objective's format; a shard of the other format is one line."""
        wanted = IMAGE_MEMBERS[self.image_format]
        if wanted not in sample:
            other = next((f for f, m in IMAGE_MEMBERS.items() if m in sample), None)
            if other is not None:
                raise ShowoError(
                    f"shard {sample.get('__url__', '?')} holds image {other} ({IMAGE_MEMBERS[other]}), the"
                    f" {self.name} objective trains on image {self.image_format} ({wanted})"
                )
        return sample_field(sample, wanted, task)

    def sample_images(self, sample: dict, vocab: Any, num_image_tokens: int, task: str):
        """(unified image ids ``[..., N]``, continuous values or None) of one shard sample (data side).

        Codes: the sample's codes offset into the vocabulary, no values; ``[F, N]`` for a keyframe sequence.
        """
        codes = np.asarray(self.check_image_member(sample, task))
        if codes.shape[-1] != num_image_tokens:
            raise ShowoError(
                f"{sample.get('__url__', '?')}: codes of {sample.get('__key__')!r} have {codes.shape[-1]} tokens,"
                f" the recipe's model.image_grid needs {num_image_tokens}"
            )
        return vocab.codes_to_ids(torch.from_numpy(codes.astype(np.int64))), None

    def resolved(self) -> ImageObjective:
        """This objective with the settings it takes from its image codec filled in and checked (the
        diffusion objective's VAE scaling); training records the result. Code objectives: itself."""
        return self

    def save_image_decoder(self, out: Any) -> bool:
        """Save what decodes this objective's images into export directory `out`, if the objective itself
        knows it (a VAE it records); False: the caller exports the recipe's image tokenizer."""
        return False

    def build_head(self, hidden_size: int, num_image_tokens: int) -> torch.nn.Module | None:
        """The module this objective adds to the transformer (`ShowO.image_head`), or None."""
        return None

    # training -------------------------------------------------------------------------------------------
    def training_rows(
        self, task: str, batch: Mapping[str, Any], generator: torch.Generator, model: Any
    ) -> Rows:
        """One task's rows on the device, ready for the transformer and the loss (default: `prepare`)."""
        ids, labels = self.prepare(
            task, batch["input_ids"], batch["labels"], generator, model.config.num_image_tokens, model.vocab
        )
        return Rows(ids, labels)

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
