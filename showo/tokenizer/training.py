"""Tokenizer training with Lightning: `fit(recipe)` trains (or reuses) a tokenizer and exports it.

Run it with `showo train recipes/tokenizer/tiny.yaml`. The run directory `<run.output_dir>/<run.name>`
holds `recipe.yaml`, `checkpoints/` (`last.ckpt` for `resume: auto`) and `tensorboard/` (losses, PSNR,
codebook usage and perplexity, grids of originals above reconstructions). The export (`export_dir`,
default `<run_dir>/tokenizer`) is what `load_image_tokenizer` reads; `training.json` beside it records
the recipe hash and final metrics, so a rerun with the same recipe returns at once.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import asdict
from datetime import timedelta
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger
from torch.utils.data import DataLoader, TensorDataset

from showo.errors import ShowoError
from showo.safeio import loads_json
from showo.tokenizer.config import TokenizerRecipe
from showo.tokenizer.data import MixtureImages, fixed_sample, heldout_photos
from showo.tokenizer.discriminator import PatchDiscriminator, adversarial_losses
from showo.tokenizer.metrics import code_histogram, codebook_stats, psnr
from showo.tokenizer.model import CONFIG_NAME, WEIGHTS_NAME, ImageTokenizer, load_image_tokenizer

TRAINING_RECORD = "training.json"
GRID_IMAGES = 8


class TokenizerDataModule(L.LightningDataModule):
    """Endless training mixture; two fixed validation sets (held-out photos, training-mixture sample)."""

    def __init__(self, recipe: TokenizerRecipe) -> None:
        super().__init__()
        self.recipe = recipe
        self.heldout: TensorDataset | None = None
        self.usage: TensorDataset | None = None

    def setup(self, stage: str) -> None:
        if self.heldout is None:
            data = self.recipe.data
            pixels, names = heldout_photos(data.resolution, data.heldout_crops, seed=self.recipe.run.seed)
            whole = torch.tensor(["/" not in n for n in names])
            self.heldout = TensorDataset(pixels, whole)
            sample = fixed_sample(data.resolution, data.weights, self.recipe.run.seed, data.usage_images)
            self.usage = TensorDataset(sample)

    def train_dataloader(self) -> DataLoader:
        data = self.recipe.data
        images = MixtureImages(
            data.resolution, data.weights, self.recipe.run.seed, crop=data.crop, max_zoom=data.max_zoom
        )
        return DataLoader(
            images,
            batch_size=data.batch_size,
            num_workers=data.num_workers,
            persistent_workers=data.num_workers > 0,
        )

    def val_dataloader(self) -> list[DataLoader]:
        return [DataLoader(self.heldout, batch_size=32), DataLoader(self.usage, batch_size=64)]


def lr_lambda(warmup_steps: int, max_steps: int, min_lr_ratio: float):
    """Linear warmup to 1, then cosine decay to `min_lr_ratio` at `max_steps` (multiplier of optim.lr)."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, max_steps - warmup_steps))
        return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


class TokenizerModule(L.LightningModule):
    """Reconstruction (L1 + L2) + LFQ commitment and entropy terms, plus an optional hinge patch-GAN.

    One optimizer holds the tokenizer and discriminator groups; the discriminator is frozen while the
    generator's adversarial term is computed and sees detached reconstructions for its own loss, so a
    single backward gives each network only its own gradients.
    """

    def __init__(self, recipe: TokenizerRecipe) -> None:
        super().__init__()
        self.recipe = recipe
        self.tokenizer = ImageTokenizer(recipe.model)
        loss = recipe.loss
        self.discriminator = (
            PatchDiscriminator(recipe.model.out_channels, loss.disc_channels, loss.disc_layers)
            if loss.gan > 0
            else None
        )
        self._psnr: list[torch.Tensor] = []
        self._counts: torch.Tensor | None = None
        self._grids: dict[str, list[torch.Tensor]] = {}
        self.evaluated: tuple[int, dict[str, float]] | None = None

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        w = self.recipe.loss
        # channels-last activations: ~10% faster small convolutions on CPU (oneDNN), same math
        batch = batch.contiguous(memory_format=torch.channels_last)
        out = self.tokenizer(batch, w.commit_beta, w.entropy_mode)
        rec = out.reconstruction
        l1 = (rec - batch).abs().mean()
        l2 = (rec - batch).pow(2).mean()
        loss = w.l1 * l1 + w.l2 * l2 + w.commit * out.commit_loss + w.entropy * out.entropy_loss
        logs = {"l1": l1, "l2": l2, "commit": out.commit_loss, "entropy": out.entropy_loss}
        if self.discriminator is not None and self.global_step >= w.gan_start_step:
            g_adv, d_loss = adversarial_losses(self.discriminator, batch, rec)
            loss = loss + w.gan * g_adv + d_loss
            logs.update(gan_g=g_adv, gan_d=d_loss)
        usage, perplexity = codebook_stats(code_histogram(out.indices, self.tokenizer.codebook_size))
        logs.update(loss=loss, psnr=psnr(rec, batch).mean(), batch_usage=usage, batch_perplexity=perplexity)
        self.log_dict({f"train/{k}": v for k, v in logs.items()}, prog_bar=False)
        self.log_dict({"loss": loss, "psnr": logs["psnr"]}, prog_bar=True, logger=False)
        return loss

    def on_validation_epoch_start(self) -> None:
        self._psnr = []
        self._counts = torch.zeros(self.tokenizer.codebook_size, dtype=torch.long, device=self.device)
        self._grids = {}

    def validation_step(self, batch: list[torch.Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        pixels = batch[0]
        codes = self.tokenizer.encode(pixels)
        grid = (
            pixels.shape[-2] // self.tokenizer.downsample_factor,
            pixels.shape[-1] // self.tokenizer.downsample_factor,
        )
        rec = self.tokenizer.decode(codes, grid=grid).clamp(-1, 1)
        name = "heldout" if dataloader_idx == 0 else "train"
        if dataloader_idx == 0:
            whole = batch[1].float()
            self._psnr.append(torch.stack([psnr(rec, pixels), whole], 1))
        else:
            self._counts += code_histogram(codes, self.tokenizer.codebook_size)
        if batch_idx == 0:
            self._grids[name] = [pixels[:GRID_IMAGES].cpu(), rec[:GRID_IMAGES].cpu()]

    def on_validation_epoch_end(self) -> None:
        reduce = self.trainer.strategy.reduce
        metrics = heldout_psnr(self, self._psnr)
        counts = reduce(self._counts, reduce_op="sum")
        usage, perplexity = codebook_stats(counts)
        metrics["train/usage"] = torch.tensor(usage)
        metrics["train/perplexity"] = torch.tensor(perplexity)
        report_validation(self, metrics, self._grids)

    def configure_optimizers(self) -> dict[str, Any]:
        return autoencoder_optimizers(self.recipe, self.tokenizer, self.discriminator)


def heldout_psnr(module: L.LightningModule, rows: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    """Mean PSNR over all ranks of the whole held-out photos and of their crops, from [N, 2] rows of
    (psnr, whole)."""
    reduce = module.trainer.strategy.reduce
    values = torch.cat(rows) if rows else torch.zeros(0, 2, device=module.device)
    whole = values[:, 1] > 0
    metrics: dict[str, torch.Tensor] = {}
    for key, part in (("heldout/psnr", values[whole, 0]), ("heldout/psnr_crops", values[~whole, 0])):
        total = reduce(part.sum().double(), reduce_op="sum")
        count = reduce(
            torch.tensor(float(part.numel()), device=module.device, dtype=torch.float64), reduce_op="sum"
        )
        if count > 0:
            metrics[key] = (total / count).float()
    return metrics


def log_grids(module: L.LightningModule, grids: dict[str, list[torch.Tensor]]) -> None:
    """TensorBoard images: each set's originals above their reconstructions."""
    if not isinstance(module.logger, TensorBoardLogger) or module.trainer.sanity_checking:
        return
    from showo.sampling.images import make_grid, to_pil

    for name, (originals, recs) in grids.items():
        sheet = make_grid(to_pil(torch.cat([originals, recs])), ncol=len(originals))
        module.logger.experiment.add_image(
            f"{name}/originals_over_reconstructions", np.asarray(sheet), module.global_step, dataformats="HWC"
        )


def report_validation(
    module: L.LightningModule, metrics: dict[str, torch.Tensor], grids: dict[str, list[torch.Tensor]]
) -> None:
    """Log the held-out metrics and image grids, and keep the metrics as ``module.evaluated`` (step, values)
    for the export's training record."""
    module.log_dict(metrics)
    module.evaluated = (module.global_step, {k: float(v) for k, v in metrics.items()})
    log_grids(module, grids)


def autoencoder_optimizers(
    recipe: Any, model: torch.nn.Module, discriminator: torch.nn.Module | None
) -> dict:
    """One AdamW over the autoencoder's groups and the discriminator's (at `loss.disc_lr`, default the
    recipe's lr), with the warmup + cosine schedule stepped per optimizer step."""
    optim = recipe.optim
    groups = _decay_groups(model, optim.weight_decay, optim.lr)
    if discriminator is not None:
        groups += _decay_groups(discriminator, optim.weight_decay, recipe.loss.disc_lr or optim.lr)
    optimizer = torch.optim.AdamW(groups, lr=optim.lr, betas=tuple(optim.betas), eps=optim.eps)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_lambda(optim.warmup_steps, optim.max_steps, optim.min_lr_ratio)
    )
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


def _decay_groups(module: torch.nn.Module, weight_decay: float, lr: float) -> list[dict[str, Any]]:
    """Weight decay on conv weights only; biases and norm affines get none."""
    decay = [p for p in module.parameters() if p.dim() >= 2]
    plain = [p for p in module.parameters() if p.dim() < 2]
    return [
        {"params": decay, "weight_decay": weight_decay, "lr": lr},
        {"params": plain, "weight_decay": 0.0, "lr": lr},
    ]


def recipe_hash(recipe: TokenizerRecipe) -> str:
    """Hash of what the trained weights depend on (not paths, cadences, resume policy or the time cap)."""
    relevant = {
        "model": asdict(recipe.model),
        "data": asdict(recipe.data),
        "loss": asdict(recipe.loss),
        "optim": asdict(recipe.optim),
        "seed": recipe.run.seed,
        "precision": recipe.trainer.precision,
    }
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:16]


def reusable_export(recipe: TokenizerRecipe, weights_name: str = WEIGHTS_NAME) -> Path | None:
    """The export directory if it already holds a tokenizer (or VAE: its `weights_name`) trained from an
    equivalent recipe."""
    export = Path(recipe.export_path)
    record = export / TRAINING_RECORD
    if not (recipe.reuse_export and record.is_file() and (export / CONFIG_NAME).is_file()):
        return None
    if not (export / weights_name).is_file():
        return None
    try:
        saved = loads_json(record.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return export if isinstance(saved, dict) and saved.get("recipe_hash") == recipe_hash(recipe) else None


def _resume_path(recipe: TokenizerRecipe, checkpoints: Path) -> str | None:
    """`auto`: the newest checkpoint (`last.ckpt`, then the step checkpoints) that passes verification, one
    line per skipped one; an explicitly named checkpoint that fails verification is an error."""
    from showo.training.checkpoint import checked, newest_good

    if recipe.resume == "never":
        return None
    if recipe.resume == "auto":
        steps = sorted(checkpoints.glob("step-*.ckpt")) if checkpoints.is_dir() else []
        last = [checkpoints / "last.ckpt"] if (checkpoints / "last.ckpt").is_file() else []
        found = newest_good(steps + last, "resume")
        return str(found) if found else None
    if not Path(recipe.resume).is_file():
        raise ShowoError(f"resume checkpoint not found: {recipe.resume}")
    return str(checked(recipe.resume, "resume"))


def _strategy(recipe: TokenizerRecipe) -> str:
    name = recipe.trainer.strategy.name
    if name == "deepspeed":
        raise ShowoError(
            "trainer.strategy.name: tokenizer and VAE runs use auto or ddp (small models; no ZeRO needed)"
        )
    return name


def build_trainer(recipe: TokenizerRecipe, run_dir: Path) -> L.Trainer:
    """A Lightning Trainer for the recipe: TensorBoard, step checkpoints (last.ckpt), LR monitor."""
    t = recipe.trainer
    checkpoint = ModelCheckpoint(
        dirpath=run_dir / "checkpoints",
        filename="step-{step:08d}",
        auto_insert_metric_name=False,
        monitor="step",
        mode="max",
        save_top_k=t.keep_checkpoints,
        every_n_train_steps=t.checkpoint_every,
        save_last=True,
    )
    every = t.sample_every or recipe.optim.max_steps
    return L.Trainer(
        accelerator=t.accelerator,
        devices=t.devices,
        num_nodes=t.num_nodes,
        precision=t.precision,
        strategy=_strategy(recipe),
        max_steps=recipe.optim.max_steps,
        max_time=timedelta(minutes=recipe.max_minutes) if recipe.max_minutes else None,
        logger=TensorBoardLogger(save_dir=str(run_dir), name="tensorboard", version=""),
        callbacks=[checkpoint, LearningRateMonitor(logging_interval="step")],
        log_every_n_steps=t.log_every,
        val_check_interval=every,
        check_val_every_n_epoch=None,
        num_sanity_val_steps=0,
        gradient_clip_val=recipe.optim.grad_clip,
        accumulate_grad_batches=recipe.optim.accumulate_grad_batches,
        enable_model_summary=False,
    )


def fit_and_evaluate(
    recipe: Any, make_module: Callable[[Any], Any]
) -> tuple[L.Trainer, Any, dict[str, float]]:
    """A seeded fit of ``make_module(recipe)`` on the recipe's images, resumed from the run's last checkpoint,
    and the module's held-out metrics at the final step (validated once more unless the last validation was
    at that step). Shared by the image tokenizer and the VAE, whose modules keep ``evaluated``."""
    from showo.recipe import save_recipe

    run_dir = Path(recipe.run_dir)
    save_recipe(recipe, run_dir / "recipe.yaml")
    L.seed_everything(recipe.run.seed, workers=True, verbose=False)
    module = make_module(recipe)
    data = TokenizerDataModule(recipe)
    trainer = build_trainer(recipe, run_dir)
    resume = _resume_path(recipe, run_dir / "checkpoints")
    # tiny gradient and optimizer values turn denormal within steps: CPU steps many times slower unless
    # flushed to zero (torch's default, restored after, keeps them)
    torch.set_flush_denormal(True)
    try:
        trainer.fit(module, datamodule=data, ckpt_path=resume, weights_only=True)
        if module.evaluated is None or module.evaluated[0] != trainer.global_step:
            trainer.validate(module, datamodule=data, verbose=False)
    finally:
        torch.set_flush_denormal(False)
    if module.evaluated is None:
        raise ShowoError(f"{run_dir}: training ended without a held-out evaluation")
    return trainer, module, module.evaluated[1]


def write_record(export: Path, recipe: Any, steps: int, metrics: dict[str, float], **facts: Any) -> dict:
    """The export's training record: which recipe (hash) and run made it, after how many steps, its
    ``facts`` (identity, ...) and held-out metrics; ``reusable_export`` reads it back."""
    record = {
        "recipe_hash": recipe_hash(recipe),
        "steps": steps,
        **facts,
        "metrics": {k: round(float(v), 4) for k, v in metrics.items()},
        "run_dir": str(recipe.run_dir),
    }
    (export / TRAINING_RECORD).write_text(json.dumps(record, indent=2) + "\n")
    return record


def fit(recipe: TokenizerRecipe) -> Path:
    """Train (or resume, or reuse) the recipe's tokenizer; returns the export directory."""
    export = reusable_export(recipe)
    if export is not None:
        print(f"showo: reusing the tokenizer already trained from this recipe at {export}")
        return export
    trainer, module, metrics = fit_and_evaluate(recipe, TokenizerModule)
    export = Path(recipe.export_path)
    if trainer.is_global_zero:
        module.tokenizer.save_pretrained(export)
        identity = load_image_tokenizer(export).identity()
        record = write_record(export, recipe, trainer.global_step, metrics, identity=identity)
        summary = ", ".join(f"{k} {v:.4g}" for k, v in record["metrics"].items())
        print(f"showo: tokenizer exported to {export} after {trainer.global_step} steps ({summary})")
    return export
