"""Diffusion (Transfusion): continuous VAE latents are noised and denoised in the same transformer as the text.

Shards hold the VAE's raw latents (`latents.npy`); the data side scales them (``(raw - shift_factor) *
scaling_factor``, the VAE's config as recorded here) and lays out the usual rows with N placeholder image ids
(the first image id) between [SOI] and [EOI], ``N = (h/p) * (w/p)`` patches. On the device, a t2i/c2i row's
latents (and each frame of a mixed row) are noised at a uniform timestep by diffusers' scheduler (DDPM
epsilon-prediction on the cosine schedule ``squaredcos_cap_v2``, or rectified flow with
`FlowMatchEulerDiscreteScheduler`), patchified and embedded with the timestep by the model's `LatentHead`
(`ShowO.image_head`); the image block attends bidirectionally (the task's own rule, as MTP). Mixed rows
diffuse every frame, each at its own timestep, as the paper does (the captions after a frame see it noised);
understanding rows (mmu, instruct) see their images clean (t = 0, no image loss). The loss is the next-token
cross-entropy of the text targets through the LM head plus ``loss_weight`` (the paper's lambda = 5) times the
MSE between the head's prediction at the image positions and the target (the noise for ``epsilon``, the
velocity ``noise - x0`` for ``flow``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from showo.errors import ShowoError
from showo.losses import IGNORE
from showo.objectives.base import ImageObjective, ObjectiveConfig, Rows, SamplerOptions
from showo.tasks import GENERATION_TASKS, INTERLEAVED_TASKS

DIFFUSED_TASKS = (*GENERATION_TASKS, *INTERLEAVED_TASKS)
"""Rows whose images are noised and denoised (Transfusion: every image of a generation or mixed sequence)."""

VAE_DIR = "vae"
"""An export's VAE subdirectory (`showo export` of a diffusion checkpoint)."""


@dataclass
class DiffusionConfig(ObjectiveConfig):
    """Transfusion's latent diffusion: a linear patch embedding, a timestep embedding, an output projection."""

    image: str = "diffusion"
    """The image objective: mtp (MaskGIT masked-token prediction, Show-o) or ar (causal next-token over codes)."""
    prediction: Literal["epsilon", "flow"] = "epsilon"
    """epsilon: DDPM noise prediction on the cosine schedule (the paper); flow: rectified flow (velocity)."""
    num_train_timesteps: int = 1000
    """Diffusion timesteps T of the training schedule (the paper: 1000)."""
    loss_weight: float = 5.0
    """lambda: weight of the diffusion MSE against the language-modelling loss (the paper: 5)."""
    patch_size: int = 2
    """Latent pixels per image position side, p (the paper: 2x2 patches of 8-channel latents at 256 px)."""
    latent_channels: int = 8
    """Channels C of the VAE's latents (the paper's VAE: 8)."""
    vae: str | None = None
    """The VAE directory (diffusers layout) whose latents the shards hold; samplers and eval decode with it."""
    scaling_factor: float | None = None
    """Training sees ``(raw - shift_factor) * scaling_factor``; null: the `vae` config's (1.0 without a vae).
    Training records the value it used in the run's recipe and every checkpoint."""
    shift_factor: float | None = None
    """Null: the `vae` config's shift_factor (0 for VAEs without one, and without a vae)."""

    def check(self, key: str) -> None:
        super().check(key)
        for name in ("num_train_timesteps", "patch_size", "latent_channels"):
            if getattr(self, name) < 1:
                raise ShowoError(f"{key}.{name} must be a positive integer, got {getattr(self, name)}")
        if not np.isfinite(self.loss_weight) or self.loss_weight < 0:
            raise ShowoError(f"{key}.loss_weight must be a finite number >= 0, got {self.loss_weight}")
        if self.scaling_factor is not None and not (
            np.isfinite(self.scaling_factor) and self.scaling_factor > 0
        ):
            raise ShowoError(f"{key}.scaling_factor must be a positive number, got {self.scaling_factor}")
        if self.shift_factor is not None and not np.isfinite(self.shift_factor):
            raise ShowoError(f"{key}.shift_factor must be a finite number, got {self.shift_factor}")


SOLVERS = ("ddim", "ddpm", "euler")


@dataclass
class DiffusionSamplerOptions(SamplerOptions):
    """Denoising the image positions (`showo.sampling.diffusion`); `guidance` is the CFG scale."""

    steps: int = 50
    """Denoising steps (the paper samples with 250 DDPM steps)."""
    solver: str | None = None
    """epsilon-prediction: ``ddim`` (deterministic, the default) or ``ddpm`` (ancestral: fresh noise every
    step, drawn from the sampler's generator); rectified flow: ``euler`` (its only one, the default)."""

    def check(self) -> None:
        super().check()
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1:
            raise ShowoError(f"steps must be a positive integer, got {self.steps}")
        if self.solver is not None and self.solver not in SOLVERS:
            raise ShowoError(f"unknown solver {self.solver!r}; expected one of {', '.join(SOLVERS)}")


class DiffusionObjective(ImageObjective):
    name = "diffusion"
    config_type = DiffusionConfig
    sampler = "diffusion"
    options_type = DiffusionSamplerOptions
    image_format = "latents"
    config: DiffusionConfig

    # schedules ------------------------------------------------------------------------------------------
    def scheduler(self) -> Any:
        """A fresh diffusers scheduler of the training schedule (samplers derive theirs with ``from_config``)."""
        from diffusers import DDPMScheduler, FlowMatchEulerDiscreteScheduler

        if self.config.prediction == "flow":
            return FlowMatchEulerDiscreteScheduler(num_train_timesteps=self.config.num_train_timesteps)
        return DDPMScheduler(
            num_train_timesteps=self.config.num_train_timesteps,
            beta_schedule="squaredcos_cap_v2",
            prediction_type="epsilon",
        )

    def noised(
        self, latents: torch.Tensor, noise: torch.Tensor, index: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(noisy latents, timestep values for the head, regression target) at schedule indices ``index [B]``.

        ``index`` counts noise up from 0 (DDPM: the timestep itself; flow: the sigma ``(index + 1) / T``).
        """
        scheduler = self.scheduler()
        if self.config.prediction == "flow":
            timesteps = scheduler.timesteps.to(latents.device)[len(scheduler.timesteps) - 1 - index.cpu()]
            noisy = scheduler.scale_noise(latents, timesteps, noise)
            return noisy, timesteps.float(), noise - latents
        timesteps = index.to(latents.device)
        return scheduler.add_noise(latents, noise, timesteps), timesteps.float(), noise

    def factors(self) -> tuple[float, float]:
        """(scaling, shift) in use: the recorded ones, 1 and 0 where none is recorded."""
        scaling, shift = self.config.scaling_factor, self.config.shift_factor
        return (1.0 if scaling is None else scaling), (0.0 if shift is None else shift)

    def scale(self, raw: torch.Tensor) -> torch.Tensor:
        """Raw VAE latents -> the model's latents (``(raw - shift) * scaling``)."""
        scaling, shift = self.factors()
        return (raw.float() - shift) * scaling

    def unscale(self, latents: torch.Tensor) -> torch.Tensor:
        """The model's latents -> raw VAE latents for the VAE's decoder."""
        scaling, shift = self.factors()
        return latents / scaling + shift

    def resolved(self) -> DiffusionObjective:
        """With a `vae`: its latent channels checked against the recipe's, and the scaling and shift factors
        the recipe leaves null taken from its config (given ones must agree); recorded from then on."""
        if self.config.vae is None:
            return self
        vae = self.load_vae()
        taken = {"scaling_factor": vae.config.scaling_factor, "shift_factor": vae.config.shift_factor or 0.0}
        config = replace(self.config)
        for key, value in taken.items():
            given = getattr(config, key)
            if given is not None and not math.isclose(given, value, rel_tol=1e-6):
                raise ShowoError(
                    f"objective.{key} {given} differs from the VAE's {value} ({config.vae}/config.json):"
                    " leave it null to take the VAE's"
                )
            setattr(config, key, float(value))
        return DiffusionObjective(config)

    def load_vae(self, export_dir: Any = None) -> Any:
        """The diffusers `AutoencoderKL` that decodes this objective's latents: an export's own `vae/` when
        `export_dir` has one, else the recorded `vae` directory (local files, safetensors only)."""
        from pathlib import Path

        from showo.vae import load_vae

        path = Path(export_dir) / VAE_DIR if export_dir is not None else None
        if path is None or not path.is_dir():
            if self.config.vae is None:
                raise ShowoError("the diffusion objective records no vae directory (objective.vae)")
            path = Path(self.config.vae)
        vae = load_vae(path).model
        if vae.config.latent_channels != self.config.latent_channels:
            raise ShowoError(
                f"VAE {path} has {vae.config.latent_channels} latent channels, the objective's"
                f" latent_channels is {self.config.latent_channels}"
            )
        return vae.eval()

    def save_image_decoder(self, out: Any) -> bool:
        """Exports carry their VAE in `<out>/vae/`."""
        from pathlib import Path

        self.load_vae().save_pretrained(str(Path(out) / VAE_DIR), safe_serialization=True)
        return True

    # data -----------------------------------------------------------------------------------------------
    def sample_images(self, sample: dict, vocab: Any, num_image_tokens: int, task: str):
        """(N placeholder ids per image, scaled latents ``[C, h, w]`` or ``[F, C, h, w]``)."""
        raw = np.asarray(self.check_image_member(sample, task))
        c, p = self.config.latent_channels, self.config.patch_size
        single = raw.ndim == 3
        frames = raw[None] if single else raw
        where = f"{sample.get('__url__', '?')}: latents of {sample.get('__key__')!r}"
        if frames.ndim != 4 or frames.shape[0] == 0 or frames.shape[1] != c:
            raise ShowoError(f"{where} have shape {list(raw.shape)}, the recipe needs [{c}, h, w] latents")
        h, w = frames.shape[2:]
        if h % p or w % p or (h // p) * (w // p) != num_image_tokens:
            raise ShowoError(
                f"{where} are {h}x{w}: {p}x{p} patches must give the {num_image_tokens} image positions of"
                " model.image_grid"
            )
        if not np.isfinite(frames).all():
            raise ShowoError(f"{where} hold non-finite values")
        latents = self.scale(torch.from_numpy(frames.astype(np.float32)))
        ids = torch.full((len(frames), num_image_tokens), vocab.image_offset, dtype=torch.long)
        return (ids[0], latents[0]) if single else (ids, latents)

    def build_head(self, hidden_size: int, num_image_tokens: int) -> torch.nn.Module:
        from showo.latents import LatentHead

        return LatentHead(hidden_size, self.config.latent_channels, self.config.patch_size)

    # training -------------------------------------------------------------------------------------------
    def attention(self, task: str) -> str:
        return task

    def prepare(self, task, ids, labels, generator, num_image_tokens, vocab):
        return ids, labels

    def mixed_rows(self, prompter, frames, captions):
        """Every frame's positions carry their placeholder ids as labels: each frame is diffused and scored."""
        return prompter.mixed(frames, captions, labels=frames)

    def image_targets(self, labels: torch.Tensor, max_text_len: int) -> torch.Tensor:
        """The N image positions of a generation row (each predicts its own patch); SOI/EOI carry none."""
        out = torch.full_like(labels, IGNORE)
        out[:, max_text_len + 2 : -1] = labels[:, max_text_len + 2 : -1]
        return out

    def training_rows(
        self, task: str, batch: Mapping[str, Any], generator: torch.Generator, model: Any
    ) -> Rows:
        """Generation and mixed rows: every image's latents noised at its own uniform timestep (noise and
        timesteps from `generator`), the target kept for the loss; understanding rows: clean latents, t = 0."""
        ids, labels = batch["input_ids"], batch["labels"]
        latents = batch.get("latents")
        if latents is None:
            return Rows(ids, labels)
        head = model.image_head
        latents = latents.to(ids.device, torch.float32)
        if task in DIFFUSED_TASKS:
            noise = torch.randn(latents.shape, generator=generator, device=generator.device).to(ids.device)
            index = torch.randint(
                0,
                self.config.num_train_timesteps,
                (len(latents),),
                generator=generator,
                device=generator.device,
            ).to(ids.device)
            noisy, timesteps, target = self.noised(latents, noise, index)
            embeds = head.embed(head.patchify(noisy), timesteps)
            return Rows(ids, labels, embeds.flatten(0, 1), head.patchify(target).flatten(0, 1))
        clean = torch.zeros(len(latents), device=ids.device)
        return Rows(ids, labels, head.embed(head.patchify(latents), clean).flatten(0, 1))

    def loss(self, labelled: Any, model: Any, coeffs: Mapping[str, float]) -> tuple[dict, dict]:
        """Next-token cross-entropy of the text targets (LM head) + lambda * MSE at the image positions.

        A target that is an image id marks an image position (its regression target is in
        `labelled.image_values`); the rest are text. ``loss_<task>`` is the MSE of a generation task, the
        cross-entropy of the others; a mixed task also reports ``loss_mixed_diffusion``.
        """
        from showo.losses import Labelled, labelled_loss

        parts = labelled.by_task()
        where = {t: model.vocab.is_image(targets) for t, (_, targets) in parts.items()}
        text = [(t, int((~where[t]).sum())) for t, _ in labelled.tasks if t not in GENERATION_TASKS]
        scored = Labelled(
            torch.cat([parts[t][0][~where[t]] for t, _ in text]) if text else labelled.logits[:0],
            torch.cat([parts[t][1][~where[t]] for t, _ in text]) if text else labelled.targets[:0],
            text,
            labelled.anchor,
        )
        out = labelled_loss(scored.with_head(model.llm.lm_head), coeffs)
        total = out["loss"]
        for task, _ in labelled.tasks:
            image = where[task]
            if not image.any():
                continue
            target = labelled.image_values.get(task)
            count = int(image.sum())
            assert target is not None and len(target) == count, f"{task}: a target per image position"
            predicted = model.image_head.output(parts[task][0][image])
            key = f"loss_{task}" if task in GENERATION_TASKS else f"loss_{task}_diffusion"
            out[key] = F.mse_loss(predicted, target.float())
            if task in GENERATION_TASKS:
                out[f"tokens_{task}"] = torch.tensor(count, device=predicted.device)
            total = total + self.config.loss_weight * coeffs.get(task, 1.0) * out[key]
        out["loss"] = total
        return out, {}

    # sampling -------------------------------------------------------------------------------------------
    def generate(self, model, prompter, prompts: Sequence[str], options, generator=None, progress=False):
        from showo.sampling import diffusion

        return diffusion.generate(model, prompter, prompts, options, generator=generator, progress=progress)

    def sample_frame(self, sequence: Any, options, generator):
        from showo.sampling import diffusion

        return diffusion.sample_frame(sequence, options, generator)
