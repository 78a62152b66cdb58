"""TensorBoard previews every `sample_every` steps: image grids for fixed prompts and seeds (the run's own
sampler, as inference uses it: MaskGIT for MTP, token by token for AR) and captions of fixed images, so runs are comparable step to step.

Every rank runs the sampler (under ZeRO-3 each forward gathers parameters from all ranks); rank 0 decodes
the codes with the image tokenizer and writes the summaries.
"""

from __future__ import annotations

import itertools
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch

from showo.data.datamodule import ShowoDataModule
from showo.data.reader import CodeSpec, read_shards
from showo.recipe.schema import ShowoRecipe
from showo.sampling import understand
from showo.sampling.images import decode_codes, make_grid, to_pil

CAPTION_QUESTION = "Describe the image."


class Previews(pl.Callback):
    """Writes `samples/t2i` (grid), `samples/prompts`, `samples/caption_images` (grid), `samples/captions`."""

    def __init__(self, recipe: ShowoRecipe, datamodule: ShowoDataModule) -> None:
        self.cfg = recipe.trainer.sample
        self.every = recipe.trainer.sample_every
        self.grid = tuple(recipe.model.image_grid)
        self.image_tokenizer_path = recipe.model.image_tokenizer
        self.datamodule = datamodule
        self._image_tokenizer: Any = None

    def image_tokenizer(self) -> Any:
        if self._image_tokenizer is None:
            from showo.tokenizer.model import load_image_tokenizer

            self._image_tokenizer = load_image_tokenizer(self.image_tokenizer_path)
        return self._image_tokenizer

    def decode(self, model: Any, images: torch.Tensor) -> torch.Tensor:
        """Sampled images -> pixels: codes by the recipe's image tokenizer; without one (a latent objective)
        scaled latents by the objective's VAE."""
        if self.image_tokenizer_path is not None:
            return decode_codes(self.image_tokenizer(), images, self.grid)
        if self._image_tokenizer is None:
            from showo.sampling.latent_images import LatentImages

            objective = model.objective
            self._image_tokenizer = LatentImages(objective.load_vae(), objective, model.image_head.patch_size)
        return self._image_tokenizer.decode(images)

    def caption_codes(self, num_tokens: int, codebook_size: int) -> torch.Tensor | None:
        """Codes of the first `caption_images` samples of the captioning stream's first shard (read and
        checked by the one shard reader, like the training stream)."""
        task = next((t for t in ("mmu", "instruct") if t in self.datamodule.urls), None)
        if task is None or self.cfg.caption_images == 0:
            return None
        first = self.datamodule.urls[task][0]
        pipeline = read_shards([first], CodeSpec(codebook_size, num_tokens))
        codes = [
            np.asarray(s["codes.npy"]).astype(np.int64)
            for s in itertools.islice(pipeline, self.cfg.caption_images)
            if "codes.npy" in s
        ]
        codes = [c for c in codes if c.shape == (num_tokens,)]
        return torch.from_numpy(np.stack(codes)) if codes else None

    def sample_codes(self, model: Any, prompter: Any, device: torch.device) -> torch.Tensor:
        """Codes [P, N] of the preview prompts, drawn by the model's own objective's sampler."""
        objective = model.objective
        settings = {
            "steps": self.cfg.steps,
            "guidance": self.cfg.guidance,
            "temperature": self.cfg.temperature,
        }
        generator = torch.Generator(device=device).manual_seed(self.cfg.seed)
        return objective.generate(
            model, prompter, list(self.cfg.prompts), objective.options_from(settings), generator
        )

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        step = trainer.global_step
        if step > 0 and step % self.every == 0:
            self.log_previews(trainer, pl_module, step)

    @torch.no_grad()
    def log_previews(self, trainer: pl.Trainer, pl_module: pl.LightningModule, step: int) -> None:
        model = pl_module.model
        was_training = model.training
        model.eval()
        prompter = model.prompter()
        writer = trainer.logger.experiment if trainer.is_global_zero and trainer.logger is not None else None
        try:
            if self.cfg.prompts:
                codes = self.sample_codes(model, prompter, pl_module.device)
                if writer is not None:
                    pixels = self.decode(model, codes.cpu())
                    writer.add_image(
                        "samples/t2i", np.asarray(make_grid(to_pil(pixels))), step, dataformats="HWC"
                    )
                    writer.add_text("samples/prompts", " | ".join(self.cfg.prompts), step)
            codes = self.caption_codes(model.config.num_image_tokens, model.vocab.codebook_size)
            if codes is not None:
                ids = model.vocab.codes_to_ids(codes).to(pl_module.device)
                answers = understand.decode(
                    model, prompter, ids, [CAPTION_QUESTION] * len(ids), max_new_tokens=24
                )
                if writer is not None:
                    pixels = decode_codes(self.image_tokenizer(), codes, self.grid)
                    writer.add_image(
                        "samples/caption_images",
                        np.asarray(make_grid(to_pil(pixels))),
                        step,
                        dataformats="HWC",
                    )
                    writer.add_text(
                        "samples/captions", "\n\n".join(f"{i}: {a}" for i, a in enumerate(answers)), step
                    )
        finally:
            model.train(was_training)
