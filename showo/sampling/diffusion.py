"""Diffusion sampling for the Transfusion objective: the image positions of `[soi] N latents [eoi]` are denoised
by the transformer, the text before them computed once.

The t2i layout `P.. [t2i][bos] text [eos] [soi] img [eoi]` (the image positions hold a placeholder image id;
their input is the latent head's embedding of the current noisy latent patches and the timestep). The text
prefix never attends to the image, so its keys and values are cached once (`kv.FrozenPrefix`) and each
denoising step runs only the N+2 positions from [soi] to [eoi]; `use_cache=False` recomputes the whole
sequence every step (the reference the cache is tested against). Classifier-free guidance runs the null
prompt's rows beside the conditional ones and combines the predictions as every sampler here does,
``(1 + w) * cond - w * uncond`` (`guidance.guided`; the usual scale is ``1 + w``). The scheduler is diffusers'
one derived from the objective's training schedule: by default DDIM (deterministic; diffusers' "leading"
timesteps, which stop short of t = T-1, where the cosine schedule's signal is ~1e-9 and an epsilon error would
be amplified ~2e4-fold; no clipping of the predicted latent, which is not in [-1, 1]) for epsilon-prediction,
the flow-matching Euler scheduler for rectified flow; ``solver: ddpm`` samples epsilon-prediction
ancestrally (DDPM, the paper's sampler) with noise from the sampler's generator.
The result is the model's (scaled) latents [B, C, h, w]; `ImageObjective.unscale` and the VAE make pixels
(`pipeline.Pipeline.decode_images`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from tqdm.auto import tqdm

from showo.attention import omni_attention_mask
from showo.errors import ShowoError
from showo.sampling.guidance import guided, guided_rows
from showo.sampling.kv import FrozenPrefix, model_dtype

Predict = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""(latents x_t [B,C,h,w], timestep) -> the model's guided output (noise or velocity) [B,C,h,w]."""


def check_steps(steps: Any) -> None:
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ShowoError(f"steps must be a positive integer, got {steps!r}")


def sampling_scheduler(objective: Any, steps: int, solver: str | None = None) -> Any:
    """The diffusers scheduler that samples `steps` steps of the objective's training schedule with `solver`
    (None: DDIM for epsilon-prediction, Euler for rectified flow; ``ddpm``: ancestral, epsilon only)."""
    from diffusers import DDIMScheduler, DDPMScheduler, FlowMatchEulerDiscreteScheduler

    check_steps(steps)
    train = objective.scheduler()
    flow = isinstance(train, FlowMatchEulerDiscreteScheduler)
    allowed = ("euler",) if flow else ("ddim", "ddpm")
    if solver is not None and solver not in allowed:
        kind = "rectified flow" if flow else "epsilon-prediction"
        raise ShowoError(f"solver {solver!r} cannot sample {kind}; it takes {' or '.join(allowed)}")
    if flow:
        scheduler = FlowMatchEulerDiscreteScheduler.from_config(train.config)
    elif solver == "ddpm":
        scheduler = DDPMScheduler.from_config(train.config, clip_sample=False)
    else:
        scheduler = DDIMScheduler.from_config(train.config, clip_sample=False)
    scheduler.set_timesteps(steps)
    return scheduler


def latent_size(model: Any) -> tuple[tuple[int, int, int], tuple[int, int]]:
    """((C, h, w) of one image's latents, the (square) grid of image positions)."""
    head, num = model.image_head, model.config.num_image_tokens
    if head is None:
        raise ShowoError(f"the {model.objective.name} objective has no latent head to denoise with")
    side = math.isqrt(num)
    if side * side != num:
        raise ShowoError(f"{num} image positions is not a square grid")
    return (head.latent_channels, side * head.patch_size, side * head.patch_size), (side, side)


def clean_embeds(model: Any, latents: torch.Tensor) -> torch.Tensor:
    """Scaled latents [B,C,h,w] as the input embeddings [B*N, H] of their image positions at t = 0 (how
    understanding and mixed rows see an image)."""
    head = model.image_head
    zero = torch.zeros(latents.shape[0], device=latents.device)
    return head.embed(head.patchify(latents), zero).flatten(0, 1)


def image_predictor(
    model: Any,
    ids: torch.Tensor,
    mask: torch.Tensor,
    soi: int,
    prefix: FrozenPrefix | None,
    batch: int,
    guidance: float,
    earlier: torch.Tensor | None = None,
) -> Predict:
    """The `Predict` of the latent block opening at column `soi` of `ids` [R,L] (R = batch, or 2*batch with
    guidance: conditional rows, then null-prompt rows); `mask` [R,1,L,L].

    With `prefix` (the frozen KV cache of `ids[:, :soi]`) a step runs only the N+2 positions from [soi];
    without, all of `ids`, whose image positions before `soi` take `earlier` [K,H] (clean embeddings of
    the images already in a mixed sequence).
    """
    head, num = model.image_head, model.config.num_image_tokens
    _, grid = latent_size(model)
    rows, end = ids.shape[0], soi + num + 2
    positions = torch.arange(soi, end, device=ids.device).unsqueeze(0).expand(rows, -1)
    mask = model.kernel_mask(mask[:, :, soi:end, :end] if prefix is not None else mask)

    def predict(latents: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
        patches = head.patchify(latents).repeat(rows // latents.shape[0], 1, 1)
        t = torch.full((rows,), float(timestep), device=ids.device)
        embeds = head.embed(patches, t).flatten(0, 1)
        if prefix is not None:
            hidden = prefix(ids[:, soi:end], mask, positions, embeds)[:, 1 : 1 + num]
        else:
            every = embeds if earlier is None else torch.cat([earlier.to(embeds.dtype), embeds])
            hidden = model.hidden_states(ids, mask, image_embeds=every)[:, soi + 1 : soi + 1 + num]
        return head.unpatchify(guided(head.output(hidden), batch, guidance), grid)

    return predict


def denoise(
    predict: Predict,
    scheduler: Any,
    shape: tuple[int, ...],
    generator: torch.Generator | None,
    device: torch.device,
    progress: bool = False,
) -> torch.Tensor:
    """The scheduler's loop from Gaussian noise (drawn from `generator` on its own device); latents of `shape`."""
    noise_device = generator.device if generator is not None else device
    latents = torch.randn(shape, generator=generator, device=noise_device).to(device)
    latents = latents * getattr(scheduler, "init_noise_sigma", 1.0)  # flow matching: no such scale (1)
    for timestep in tqdm(scheduler.timesteps, desc="diffusion", disable=not progress, leave=False):
        model_input = (
            scheduler.scale_model_input(latents, timestep)
            if hasattr(scheduler, "scale_model_input")
            else latents
        )
        output = predict(model_input, timestep)
        latents = scheduler.step(output, timestep, latents, generator=generator, return_dict=False)[0]
    return latents


@torch.no_grad()
def generate(
    model: torch.nn.Module,
    prompter,
    prompts: Sequence[str],
    options: Any,
    generator: torch.Generator | None = None,
    progress: bool = False,
    use_cache: bool = True,
) -> torch.Tensor:
    """Scaled latents [B, C, h, w] for text prompts (`options`: the objective's `DiffusionSamplerOptions`:
    `steps`, `guidance`, `solver`)."""
    check_steps(options.steps)
    if options.guidance < 0:
        raise ShowoError(f"guidance must be >= 0, got {options.guidance}")
    objective, vocab = model.objective, model.vocab
    device = next(model.parameters()).device
    shape, _ = latent_size(model)
    batch, num = len(prompts), prompter.num_image_tokens
    placeholders = torch.full((batch, num), vocab.image_offset, dtype=torch.long)
    ids = guided_rows(prompter, prompts, placeholders, options.guidance).to(device)
    mask = omni_attention_mask(ids, vocab, objective.attention("t2i"), dtype=model_dtype(model))
    soi = ids.shape[1] - num - 2  # the text prefix [0, soi) never attends to the image
    prefix = FrozenPrefix.prefill(model, ids, mask, soi) if use_cache else None
    predict = image_predictor(model, ids, mask, soi, prefix, batch, options.guidance)
    scheduler = sampling_scheduler(objective, options.steps, options.solver)
    return denoise(predict, scheduler, (batch, *shape), generator, device, progress)


def sample_frame(sequence: Any, options: Any, generator: torch.Generator | None) -> torch.Tensor:
    """One diffused image in a mixed-modality `showo.sampling.mixed.Sequence` (no guidance: the mixed stream
    has no null condition); returns its scaled latents [C, h, w]."""
    return sequence.diffused_frame(generator, options.steps)
