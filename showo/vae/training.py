"""VAE training with Lightning on the image tokenizer's machinery: `fit(recipe)` trains (or reuses) a
diffusers `AutoencoderKL` and exports it in the diffusers layout.

Run it with `showo train recipes/vae/tiny.yaml`. Data (the embedded mixture, held-out photos, the usage
sample), the trainer (TensorBoard, step checkpoints, `resume: auto`, `max_minutes`), the LR schedule, the
patch-GAN, held-out PSNR, grids and the `training.json` reuse record are the tokenizer's
(`showo.tokenizer.training`); what differs is the model and its loss (reconstruction + KL), and the
latent statistics measured on the usage sample, from which the exported `scaling_factor` is set when the
recipe leaves it null.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch
from diffusers import AutoencoderKL

from showo.tokenizer.discriminator import PatchDiscriminator, adversarial_losses
from showo.tokenizer.metrics import psnr
from showo.tokenizer.training import (
    GRID_IMAGES,
    autoencoder_optimizers,
    fit_and_evaluate,
    heldout_psnr,
    report_validation,
    write_record,
)
from showo.tokenizer.training import reusable_export as _reusable_export
from showo.vae.config import VaeRecipe
from showo.vae.model import WEIGHTS_NAME, Vae, load_vae


class VaeModule(L.LightningModule):
    """Reconstruction (L1 + L2) of a posterior sample + KL to N(0, I), plus an optional hinge patch-GAN.

    As in the tokenizer, one optimizer holds the VAE and discriminator groups; the discriminator is frozen
    while the generator's adversarial term is computed and sees detached reconstructions for its own loss.
    """

    def __init__(self, recipe: VaeRecipe) -> None:
        super().__init__()
        self.recipe = recipe
        self.vae = Vae(AutoencoderKL(**recipe.model.diffusers_kwargs(recipe.data.resolution)))
        loss = recipe.loss
        self.discriminator = (
            PatchDiscriminator(3, loss.disc_channels, loss.disc_layers) if loss.gan > 0 else None
        )
        self._psnr: list[torch.Tensor] = []
        self._moments: torch.Tensor | None = None
        self._grids: dict[str, list[torch.Tensor]] = {}
        self.evaluated: tuple[int, dict[str, float]] | None = None

    def losses(self, batch: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
        """(total loss, its logged terms, reconstruction) for pixels in [-1, 1]."""
        w = self.recipe.loss
        posterior = self.vae.model.encode(batch).latent_dist
        rec = self.vae.model.decode(posterior.sample()).sample
        l1 = (rec - batch).abs().mean()
        l2 = (rec - batch).pow(2).mean()
        kl = posterior.kl().mean() / posterior.mean[0].numel()  # diffusers sums over a latent's elements
        loss = w.l1 * l1 + w.l2 * l2 + w.kl * kl
        logs = {"l1": l1, "l2": l2, "kl": kl}
        if self.discriminator is not None and self.global_step >= w.gan_start_step:
            g_adv, d_loss = adversarial_losses(self.discriminator, batch, rec)
            loss = loss + w.gan * g_adv + d_loss
            logs.update(gan_g=g_adv, gan_d=d_loss)
        return loss, {**logs, "loss": loss}, rec

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        # channels-last activations: faster small convolutions on CPU (oneDNN), same math
        batch = batch.contiguous(memory_format=torch.channels_last)
        loss, logs, rec = self.losses(batch)
        logs["psnr"] = psnr(rec, batch).mean()
        self.log_dict({f"train/{k}": v for k, v in logs.items()}, prog_bar=False)
        self.log_dict({"loss": loss, "psnr": logs["psnr"]}, prog_bar=True, logger=False)
        return loss

    def on_validation_epoch_start(self) -> None:
        self._psnr = []
        self._moments = torch.zeros(3, dtype=torch.float64, device=self.device)
        self._grids = {}

    def validation_step(self, batch: list[torch.Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        pixels = batch[0]
        raw = self.vae.encode(pixels)
        rec = self.vae.decode(raw)
        name = "heldout" if dataloader_idx == 0 else "train"
        if dataloader_idx == 0:
            self._psnr.append(torch.stack([psnr(rec, pixels), batch[1].float()], 1))
        else:
            shifted = (raw - self.vae.shift_factor).double()
            self._moments += torch.stack(
                [shifted.new_tensor(shifted.numel()), shifted.sum(), shifted.pow(2).sum()]
            )
        if batch_idx == 0:
            self._grids[name] = [pixels[:GRID_IMAGES].cpu(), rec[:GRID_IMAGES].cpu()]

    def on_validation_epoch_end(self) -> None:
        metrics = heldout_psnr(self, self._psnr)
        count, total, squares = self.trainer.strategy.reduce(self._moments, reduce_op="sum")
        if count > 0:
            mean = total / count
            metrics["latents/mean"] = mean.float()
            metrics["latents/std"] = (squares / count - mean**2).clamp_min(0).sqrt().float()
        report_validation(self, metrics, self._grids)

    def configure_optimizers(self) -> dict[str, Any]:
        return autoencoder_optimizers(self.recipe, self.vae, self.discriminator)


def reusable_export(recipe: VaeRecipe) -> Path | None:
    """The export directory if it already holds a VAE trained from an equivalent recipe."""
    return _reusable_export(recipe, WEIGHTS_NAME)


def scaling_factor(recipe: VaeRecipe, metrics: dict[str, float]) -> float:
    """The recipe's scaling factor, or 1 / std of the shifted latents over the usage sample."""
    if recipe.model.scaling_factor is not None:
        return recipe.model.scaling_factor
    std = metrics.get("latents/std", 0.0)
    return 1.0 / std if std > 0 else 1.0


def fit(recipe: VaeRecipe) -> Path:
    """Train (or resume, or reuse) the recipe's VAE; returns the export directory (diffusers layout)."""
    export = reusable_export(recipe)
    if export is not None:
        print(f"showo: reusing the VAE already trained from this recipe at {export}")
        return export
    trainer, module, metrics = fit_and_evaluate(recipe, VaeModule)
    export = Path(recipe.export_path)
    if trainer.is_global_zero:
        module.vae.model.register_to_config(scaling_factor=scaling_factor(recipe, metrics))
        module.vae.save_pretrained(export)
        vae = load_vae(export)
        facts = {
            "identity": vae.identity(),
            "scaling_factor": vae.scaling_factor,
            "shift_factor": vae.shift_factor,
        }
        record = write_record(export, recipe, trainer.global_step, metrics, **facts)
        summary = ", ".join(f"{k} {v:.4g}" for k, v in record["metrics"].items())
        print(
            f"showo: VAE exported to {export} after {trainer.global_step} steps "
            f"(scaling_factor {vae.scaling_factor:.4g}, {summary})"
        )
    return export
