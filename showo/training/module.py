"""The LightningModule: the image objective's row preparation, the omni-attention forward, the weighted losses.

Rows arrive prompted from the loader workers (`showo.data`); here the recipe's image objective
(`showo.objectives`) prepares them on the device (MTP masks the image tokens, AR keeps them) and names the
attention rule of each task, rows of equal length are concatenated into one forward pass (official layout
[t2i | lm | mmu | ...]), the LM head is applied only where a position has a target, and
the objective's loss weighs the per-task means by the recipe's `loss_coeff`. Every random
draw is seeded from (seed, rank, micro-batch index), so a resumed run reproduces the uninterrupted one
step for step.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import grad_norm
from omegaconf import OmegaConf
from webdataset.utils import make_seed

from showo import objectives
from showo.attention import batch_attention_mask, batch_block_mask
from showo.errors import ShowoError
from showo.losses import Labelled, gather_labelled
from showo.model import ShowO
from showo.objectives.base import Rows
from showo.packing import packed_hidden_states
from showo.recipe.schema import ShowoRecipe
from showo.training.optim import build_optimizer
from showo.vocab import UnifiedVocab

METADATA_KEY = "showo"
"""Checkpoint entry with what export and init_from need: vocabulary, model config (with the image objective
and its settings, `model_config["objective"]`), tokenizer files."""


def tokenizer_files(tokenizer: Any) -> dict[str, str]:
    """The text tokenizer as {file name: text}, so checkpoints are self-contained for export."""
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        tokenizer.save_pretrained(tmp)
        return {p.name: p.read_text() for p in sorted(Path(tmp).iterdir()) if p.is_file()}


class ShowoModule(pl.LightningModule):
    """Trains a `ShowO` on the combined per-task batches of `showo.data.ShowoDataModule`."""

    def __init__(self, model: ShowO, recipe: ShowoRecipe) -> None:
        super().__init__()
        self.model = model.train()  # from_pretrained leaves modules in eval mode
        self.recipe = recipe
        self.coeffs = {t: s.loss_coeff for t, s in recipe.data.streams.items() if s is not None}
        self.objective = objectives.get(recipe.objective)
        self.model.set_objective(self.objective)  # recorded in every checkpoint and export; gives the head
        self.metrics: dict[str, torch.Tensor] = {}
        self.save_hyperparameters({"recipe": OmegaConf.to_container(OmegaConf.structured(recipe))})
        self._grad_norm: torch.Tensor | None = None
        self.positions_run = 0
        """Positions the transformer ran in the last step (packed rows drop the pads): the MFU numerator."""
        if recipe.model.compile:
            self.model.llm.get_decoder().compile()

    @property
    def vocab(self) -> UnifiedVocab:
        return self.model.vocab

    def mask_images(self, task: str, ids: torch.Tensor, labels: torch.Tensor, generator: torch.Generator):
        """The objective's device-side preparation of one task's rows (MTP: mask every image on its own)."""
        return self.objective.prepare(
            task, ids, labels, generator, self.model.config.num_image_tokens, self.vocab
        )

    def generator(self, micro_batch: int) -> torch.Generator:
        seed = make_seed(self.recipe.run.seed, self.global_rank, micro_batch, 2)
        return torch.Generator(device=self.device).manual_seed(seed)

    def task_hidden(self, rows: Mapping[str, Rows]) -> dict[str, torch.Tensor]:
        """Final hidden states per task: one forward per row length (multi-frame mixed rows are longer), or
        one forward over packed rows with `data.pack_tokens`. Image embeddings (a latent objective's) are
        handed to the forward of the rows they belong to."""
        hidden: dict[str, torch.Tensor] = {}
        if self.recipe.data.pack_tokens:
            parts = [(self.objective.attention(t), r.ids) for t, r in rows.items()]
            embeds = self.image_embeds(list(rows.values()))
            out, self.positions_run = packed_hidden_states(
                self.model, parts, self.recipe.data.pack_tokens, embeds
            )
            return dict(zip(rows, out))
        self.positions_run = sum(r.ids.numel() for r in rows.values())
        by_length: dict[int, list[str]] = {}
        for task, r in rows.items():
            by_length.setdefault(r.ids.shape[1], []).append(task)
        for tasks in by_length.values():
            ids = torch.cat([rows[t].ids for t in tasks])
            parts = [(self.objective.attention(t), rows[t].ids) for t in tasks]
            if self.model.uses_flex:
                mask = batch_block_mask(parts, self.vocab)
            else:
                mask = batch_attention_mask(parts, self.vocab)
            out = self.model.hidden_states(ids, mask, self.image_embeds([rows[t] for t in tasks]))
            hidden.update(zip(tasks, out.split([rows[t].ids.shape[0] for t in tasks])))
        return hidden

    def image_embeds(self, rows: list[Rows]) -> torch.Tensor | None:
        """The image embeddings ``[K, H]`` of rows run together (None when no task has any)."""
        given = [r.image_embeds for r in rows]
        if all(e is None for e in given):
            return None
        some = next(e for e in given if e is not None)
        return torch.cat([e if e is not None else some[:0] for e in given])

    def losses(self, rows: Mapping[str, Rows | tuple[torch.Tensor, torch.Tensor]]) -> tuple[dict, Labelled]:
        """The weighted loss of the objective from the hidden states at labelled positions, and what it scored.

        `rows` are the objective's `Rows` per task (or (ids, labels) pairs of code objectives). The objective's
        metrics (e.g. image-token accuracy) are kept in `self.metrics` for logging.
        """
        rows = {t: r if isinstance(r, Rows) else Rows(*r) for t, r in rows.items()}
        labelled = gather_labelled(
            self.task_hidden(rows),
            {t: r.labels for t, r in rows.items()},
            None,
            max_text_len=self.model.config.max_text_len,
            image_objective=self.objective,
        )
        labelled.image_values = {t: r.image_values for t, r in rows.items() if r.image_values is not None}
        out, self.metrics = self.objective.loss(labelled, self.model, self.coeffs)
        return out, labelled

    def training_step(self, batch: Mapping[str, Mapping[str, Any]], batch_idx: int) -> torch.Tensor:
        micro = int(next(iter(batch.values()))["step"])
        generator = self.generator(micro)
        rows = {t: self.objective.training_rows(t, b, generator, self.model) for t, b in batch.items()}
        out, labelled = self.losses(rows)
        metrics = {k: v for k, v in out.items() if k.startswith("loss_")}
        metrics.update(self.metrics)
        self.log_dict({f"train/{k}": v.detach() for k, v in metrics.items()}, on_step=True, prog_bar=False)
        self.log("train/loss", out["loss"].detach(), on_step=True, prog_bar=True)
        scheduler = self.lr_schedulers()
        if scheduler is not None:
            self.log("train/lr", float(scheduler.get_last_lr()[0]), on_step=True)
        return out["loss"]

    def image_accuracy(self, labelled: Labelled) -> dict:
        """The objective's metrics of the last `losses` call (accuracy on the image-token targets)."""
        return dict(self.metrics)

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        if not hasattr(self.trainer.strategy, "deepspeed_engine"):
            norms = grad_norm(self.model, norm_type=2)
            if "grad_2.0_norm_total" in norms:
                self.log("train/grad_norm", norms["grad_2.0_norm_total"], on_step=True)

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        engine = getattr(self.trainer.strategy, "deepspeed_engine", None)
        if engine is not None and engine.get_global_grad_norm() is not None:
            self.log("train/grad_norm", float(engine.get_global_grad_norm()), on_step=True)

    def configure_optimizers(self) -> dict[str, Any]:
        strategy = self.recipe.trainer.strategy
        offload = strategy.name == "deepspeed" and strategy.offload_optimizer
        optimizer, scheduler = build_optimizer(self.model, self.recipe.optim, cpu_offload=offload)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[METADATA_KEY] = {
            "vocab": self.vocab.to_dict(),
            "model_config": {**self.model.config.to_dict(), "llm": self.model.llm.config.to_dict()},
            "tokenizer_files": tokenizer_files(self.model.tokenizer)
            if self.model.tokenizer is not None
            else {},
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        meta = checkpoint.get(METADATA_KEY)
        recorded = meta.get("model_config", {}).get("objective") if isinstance(meta, dict) else None
        if isinstance(recorded, dict) and recorded.get("image") != self.objective.name:
            raise ShowoError(
                f"the checkpoint was trained with the {recorded.get('image')!r} objective, the recipe names"
                f" {self.objective.name!r} (start a new run to change objectives)"
            )
        if meta is not None and UnifiedVocab.from_dict(meta["vocab"]) != self.vocab:
            raise ShowoError(
                "the checkpoint's vocabulary differs from the recipe's (text tokenizer or codebook_size)"
            )
