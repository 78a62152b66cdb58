"""MaskGIT parallel decoding for text-to-image (and, given known tokens, inpainting).

Each of the T steps samples every position from the (CFG-combined) image-code distribution, keeps the
known tokens, then re-masks the least confident of the new ones (confidence = log p + tau * Gumbel).
The text prefix is cached once (`kv.FrozenPrefix`), so a step costs only the N+2 image positions,
with and without guidance; `use_cache=False` recomputes the whole sequence as the official code does.
Where this loop matches the official sampler and where it departs: docs/official-differences.md#sampling.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from tqdm.auto import tqdm

from showo.attention import omni_attention_mask
from showo.errors import ShowoError
from showo.sampling.guidance import guided, guided_rows
from showo.sampling.kv import FrozenPrefix, model_dtype
from showo.sampling.remask import Draw, check_draw, draw_codes, mask_by_random_topk
from showo.sampling.schedules import TEMPERATURE_SCHEDULES, choice_temperature, mask_len


def check_settings(steps: int, guidance: float, temperature_schedule: str, draw: str = "inverse_cdf") -> None:
    """Raise ShowoError for settings no run could use (checked before any model is loaded)."""
    if steps < 1:
        raise ShowoError(f"steps must be at least 1, got {steps}")
    if guidance < 0:
        raise ShowoError(f"guidance must be >= 0, got {guidance}")
    if temperature_schedule not in TEMPERATURE_SCHEDULES:
        raise ShowoError(
            f"unknown temperature schedule {temperature_schedule!r} (expected one of {TEMPERATURE_SCHEDULES})"
        )
    check_draw(draw)


def grid_logits(
    model: torch.nn.Module, ids: torch.Tensor, mask: torch.Tensor, soi: int, prefix: FrozenPrefix | None
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The `image_logits` closure of `decode_grid` for the image block opening at column `soi` of `ids`.

    `ids` [R,L] holds `[soi] N image ids [eoi]` from `soi` on (written in place each step, repeated over the
    guidance rows); `mask` [R,1,L,L]. Everything before `soi` never attends to the image, so with `prefix`
    (the frozen KV cache of `ids[:, :soi]`) a step runs only the N+2 image positions; without, all of `ids`.
    """
    num_tokens = model.config.num_image_tokens
    img, codes = slice(soi + 1, soi + 1 + num_tokens), model.vocab.image_slice
    positions = (
        torch.arange(soi, soi + num_tokens + 2, device=ids.device).unsqueeze(0).expand(ids.shape[0], -1)
    )
    end = soi + num_tokens + 2
    mask = model.kernel_mask(mask[:, :, soi:end, :end] if prefix is not None else mask)

    def image_logits(current: torch.Tensor, select: torch.Tensor) -> torch.Tensor:
        ids[:, img] = current.repeat(ids.shape[0] // current.shape[0], 1)
        if prefix is not None:
            hidden = prefix(ids[:, soi:end], mask, positions)[:, 1 : 1 + num_tokens]
            return model.head_logits(hidden[select], codes)
        return model(ids, mask)[:, img, codes][select]

    return image_logits


def decode_grid(
    image_logits: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    image_ids: torch.Tensor,
    vocab,
    steps: int,
    guidance: float = 0.0,
    schedule: str = "cosine",
    temperature: float = 1.0,
    temperature_schedule: str = "maskgit",
    generator: torch.Generator | None = None,
    progress: bool = False,
    draw: Draw = "inverse_cdf",
) -> torch.Tensor:
    """The MaskGIT loop over one grid per row; returns raw codes [B,N].

    `image_logits(current, select)` gets the current unified ids [B,N] and a bool [R,N] (R = B, or 2B:
    conditional rows then unconditional ones when `guidance` > 0) marking the still-masked positions, and
    returns their code logits (vocabulary columns `vocab.image_slice`) as [select.sum(), K] in row-major
    order. Known positions need no logits: their tokens are kept and never re-masked. `draw` picks the
    code draw (`remask.draw_codes`): our inverse CDF, or the official `torch.multinomial`.
    """
    check_settings(steps, guidance, temperature_schedule, draw)
    batch, num_tokens = image_ids.shape
    offset = vocab.image_offset
    current = image_ids.clone()
    sampled = torch.where(current == vocab.mask_id, torch.zeros_like(current), current - offset)
    for step in tqdm(range(steps), desc="maskgit", disable=not progress, leave=False):
        unknown = current == vocab.mask_id
        if not unknown.any():
            break
        logits = image_logits(current, unknown.repeat(2 if guidance > 0 else 1, 1)).float()
        logits = guided(logits, logits.shape[0] // 2, guidance)
        probs = torch.softmax(logits, dim=-1)
        drawn = draw_codes(probs, unknown, generator, draw)
        sampled = (current - offset).masked_scatter(unknown, drawn)
        confidence = torch.full(unknown.shape, float("inf"), device=probs.device)
        confidence = confidence.masked_scatter(unknown, probs.gather(-1, drawn.unsqueeze(-1)).squeeze(-1))
        count = mask_len(num_tokens, step, steps, unknown.sum(dim=1, keepdim=True), schedule)
        tau = choice_temperature(temperature, step, steps, temperature_schedule)
        remask = mask_by_random_topk(count, confidence, tau, generator)
        current = torch.where(remask, torch.full_like(sampled, vocab.mask_id), sampled + offset)
    return sampled


@torch.no_grad()
def generate(
    model: torch.nn.Module,
    prompter,
    prompts: Sequence[str],
    steps: int = 18,
    guidance: float = 0.0,
    schedule: str = "cosine",
    temperature_schedule: str = "maskgit",
    generator: torch.Generator | None = None,
    image_ids: torch.Tensor | None = None,
    temperature: float = 1.0,
    use_cache: bool = True,
    progress: bool = False,
    draw: Draw = "inverse_cdf",
) -> torch.Tensor:
    """Generate N raw codes (0..K-1) per prompt: LongTensor [B, N].

    `image_ids` [B,N] (unified ids: `vocab.image_offset + code`, or `vocab.mask_id` where unknown) seeds
    the grid for inpainting and extrapolation; known tokens come back unchanged. The unconditional rows
    use the empty prompt and share the current image tokens (official). `temperature` is tau0 of the
    Gumbel remasking noise, annealed per `temperature_schedule` ("maskgit" or the compounding "official").
    `draw="multinomial"` with `temperature_schedule="official"` and `use_cache=False` follows the official
    sampler's random draws for a given seed.
    """
    check_settings(steps, guidance, temperature_schedule, draw)
    vocab = model.vocab
    device = next(model.parameters()).device
    num_tokens = prompter.num_image_tokens
    batch = len(prompts)
    if image_ids is None:
        image_ids = torch.full((batch, num_tokens), vocab.mask_id, dtype=torch.long)
    if tuple(image_ids.shape) != (batch, num_tokens):
        raise ShowoError(f"image_ids must have shape ({batch}, {num_tokens}), got {tuple(image_ids.shape)}")
    image_ids = image_ids.to(device)

    ids = guided_rows(prompter, prompts, image_ids, guidance).to(device)
    mask = omni_attention_mask(ids, vocab, "t2i", dtype=model_dtype(model))
    soi = ids.shape[1] - num_tokens - 2  # the text prefix [0, soi) never attends to the image
    prefix = FrozenPrefix.prefill(model, ids, mask, soi) if use_cache else None
    image_logits = grid_logits(model, ids, mask, soi, prefix)
    return decode_grid(
        image_logits,
        image_ids,
        vocab,
        steps,
        guidance,
        schedule,
        temperature,
        temperature_schedule,
        generator,
        progress,
        draw,
    )
