"""Raw shard samples -> one task's training rows, built inside the loader workers via `showo.prompting`.

Image tokens go out unmasked: the LightningModule has the image objective prepare them on the device
(MTP masks them), so the rows here depend only on the data and on a per-step seed (classifier-free-guidance dropout, caption policy,
question choice), which keeps every batch reproducible from (seed, task, rank, step).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import torch

from showo.data.reader import CodeSpec
from showo.data.text import caption_for_generation
from showo.errors import ShowoError
from showo.objectives import ImageObjective
from showo.objectives import get as get_objective
from showo.objectives.base import sample_field
from showo.prompting import Prompter
from showo.vocab import UnifiedVocab


def _field(sample: dict, name: str, task: str) -> Any:
    return sample_field(sample, name, task)


@dataclass
class BatchBuilder:
    """Builds one task's batch; picklable, so DataLoader workers (fork or spawn) each carry one."""

    task: str
    prompter: Prompter
    first_sentence_prob: float = 0.0
    strip_prefixes: bool = False
    questions: tuple[str, ...] = ("Describe the image.",)
    max_frames: int = 1
    objective: ImageObjective | str | None = None
    """The image objective (or its name; None: MTP); it lays out the mixed rows' image labels."""

    def __post_init__(self) -> None:
        self.objective = get_objective(self.objective)
        self._values: list[torch.Tensor] = []

    @property
    def vocab(self) -> UnifiedVocab:
        return self.prompter.vocab

    def code_spec(self) -> CodeSpec | None:
        """The codes this task accepts: the recipe's codebook and grid; keyframe sequences for `mixed` only.
        None for an objective whose images are not codes (it checks its own member, refusing codes)."""
        if self.objective.image_format != "codes":
            return None
        return CodeSpec(self.vocab.codebook_size, self.prompter.num_image_tokens, frames=self.task == "mixed")

    def image_ids(self, sample: dict) -> torch.Tensor:
        """The sample's unified image ids ``[N]`` (``[F, N]`` for keyframes); the objective reads the member of
        its format (codes, or latents behind placeholder ids) and its continuous values go to `self._values`."""
        ids, values = self.objective.sample_images(
            sample, self.vocab, self.prompter.num_image_tokens, self.task
        )
        if values is not None:
            self._values.append(values)
        return ids

    def __call__(self, samples: list[dict], seed: int) -> dict[str, Any]:
        """Rows for `samples`; `seed` makes every random choice of this batch reproducible.

        With a latent objective the batch also holds ``latents``: the images' scaled latents in row order
        (``[B, C, h, w]``; mixed rows: every frame of every row, in order).
        """
        rng = random.Random(seed)
        gen = torch.Generator().manual_seed(seed)
        self._values = []
        ids, labels = getattr(self, f"_{self.task}")(samples, rng, gen)
        batch = {
            "input_ids": ids,
            "labels": labels,
            "samples": len(samples),
            "keys": [s.get("__key__") for s in samples],
        }
        if self._values:
            batch["latents"] = torch.cat([v[None] if v.dim() == 3 else v for v in self._values])
        return batch

    def _t2i(self, samples: list[dict], rng: random.Random, gen: torch.Generator):
        texts = [
            caption_for_generation(
                str(_field(s, "txt", self.task)), rng, self.first_sentence_prob, self.strip_prefixes
            )
            for s in samples
        ]
        images = torch.stack([self.image_ids(s) for s in samples])
        return self.prompter.t2i(texts, images, images, generator=gen)

    def _c2i(self, samples: list[dict], rng: random.Random, gen: torch.Generator):
        texts = [str(s.get("json", {}).get("class_name") or _field(s, "txt", self.task)) for s in samples]
        images = torch.stack([self.image_ids(s) for s in samples])
        return self.prompter.t2i(texts, images, images, generator=gen)

    def _mmu(self, samples: list[dict], rng: random.Random, gen: torch.Generator):
        texts = [
            f"USER: \n{rng.choice(self.questions)} ASSISTANT: {_field(s, 'txt', self.task)}" for s in samples
        ]
        return self.prompter.mmu(torch.stack([self.image_ids(s) for s in samples]), texts)

    def _lm(self, samples: list[dict], rng: random.Random, gen: torch.Generator):
        return self.prompter.lm([str(_field(s, "txt", self.task)) for s in samples])

    def _instruct(self, samples: list[dict], rng: random.Random, gen: torch.Generator):
        conversations = []
        for s in samples:
            meta = _field(s, "json", self.task)
            conv = meta.get("conversations")
            if not conv and meta.get("qa"):
                conv = [
                    t
                    for q, a in meta["qa"]
                    for t in ({"from": "human", "value": q}, {"from": "gpt", "value": a})
                ]
            if not conv:
                raise ShowoError(f"{s.get('__url__', '?')}: sample {s.get('__key__')!r} has no conversations")
            conversations.append(conv)
        return self.prompter.instruct(torch.stack([self.image_ids(s) for s in samples]), conversations)

    def _mixed(self, samples: list[dict], rng: random.Random, gen: torch.Generator):
        frames, captions = [], []
        for s in samples:
            ids = self.image_ids(s)
            ids = ids[None] if ids.dim() == 1 else ids
            caps = list(_field(s, "json", self.task).get("frame_captions") or [_field(s, "txt", self.task)])
            count = min(len(caps), ids.shape[0])
            if count == 0:
                raise ShowoError(f"{s.get('__url__', '?')}: sample {s.get('__key__')!r} has no frames")
            take = min(count, self.max_frames)
            start = rng.randrange(count - take + 1)
            frames.append(ids[start : start + take])
            if self._values:
                values = self._values.pop()
                self._values.append((values[None] if values.dim() == 3 else values)[start : start + take])
            captions.append([str(c) for c in caps[start : start + take]])
        return self.objective.mixed_rows(self.prompter, frames, captions)
