"""Mixed-modality generation: captions and images alternating in one sequence (keyframes + captions).

The sequence follows the mixed training layout (`Prompter.mixed`):
`[lvg][bos] cap_1 [soi] img_1 [eoi] cap_2 [soi] img_2 [eoi] ... [eos]`, under the attention rule the model's
image objective gives mixed rows. Given captions are used as they are; missing ones are decoded token by
token until the model opens an image ([soi]), ends the sequence ([eos]) or fills the caption budget (then an
image is opened). Each image is drawn by the checkpoint's own sampler (`ImageObjective.sample_frame`): a
MaskGIT run whose prefix (everything before its [soi]) is a frozen KV cache (MTP), codes token by token
(AR), or Transfusion's mode switch (diffusion): at [soi] the model leaves text for a denoising loop over the
image's latent positions on the frozen prefix, appends [eoi] and goes back to text; the finished image is
then part of the cache for the text that follows (a continuous one as its clean latents, t = 0).
Rows are generated one at a time (their captions differ in length). No guidance: the mixed stream is
trained without a null condition.
"""

from __future__ import annotations

from collections.abc import Sequence as Rows
from dataclasses import asdict, dataclass
from typing import Any

import torch

from showo.attention import omni_attention_mask
from showo.errors import ShowoError
from showo.sampling import maskgit
from showo.sampling.kv import FrozenPrefix, TokenStep, model_dtype
from showo.sampling.next_token import check_sampling, next_token


@dataclass
class MixedSample:
    """One generated sequence: a caption per frame and the frames (raw codes [F, N], or scaled latents
    [F, C, h, w] for a continuous objective)."""

    captions: list[str]
    codes: torch.Tensor


class Sequence:
    """The growing token sequence of one row, with or without a KV cache over it (no pads)."""

    def __init__(self, model, ids: list[int], use_cache: bool):
        self.model, self.vocab = model, model.vocab
        self.rule = model.objective.attention("mixed")
        self.device = next(model.parameters()).device
        self.dtype = model_dtype(model)
        self.ids = torch.tensor([ids], device=self.device)
        self.frame_embeds: list[torch.Tensor] = []
        """Input embeddings of the continuous images so far (their image positions, in order)."""
        self.step = None
        if use_cache:
            positions = torch.arange(len(ids), device=self.device).unsqueeze(0)
            self.step = TokenStep(model, self.ids, self._mask(self.ids), positions, self.vocab.pad_id)
        self.last_logits = self.step.first if self.step is not None else None

    def _mask(self, ids: torch.Tensor) -> torch.Tensor:
        return omni_attention_mask(ids, self.vocab, self.rule, dtype=self.dtype)

    def masked_frame(
        self, generator: torch.Generator | None, steps: int, **maskgit_options: Any
    ) -> torch.Tensor:
        """MaskGIT over `[soi] N masks [eoi]` after the current sequence; appends the result, returns codes [N]."""
        vocab, num, start = self.vocab, self.model.config.num_image_tokens, self.ids.shape[1]
        segment = torch.tensor([[vocab.soi_id, *([vocab.mask_id] * num), vocab.eoi_id]], device=self.device)
        full = torch.cat([self.ids, segment], dim=1)
        mask = self._mask(full)
        prefix = FrozenPrefix(self.model, self.step.cache) if self.step is not None else None
        image_logits = maskgit.grid_logits(self.model, full, mask, start, prefix)
        maskgit_options.pop("guidance", None)  # the mixed stream is trained without a null condition
        result = maskgit.decode_grid(
            image_logits, segment[:, 1:-1], vocab, steps, generator=generator, **maskgit_options
        )
        full[:, start + 1 : start + 1 + num] = result + vocab.image_offset
        self.ids = full
        if self.step is not None:
            self.last_logits = self.step.extend(full[:, start:], mask[:, :, start:])
        return result[0]

    def diffused_frame(self, generator: torch.Generator | None, steps: int) -> torch.Tensor:
        """Denoise `[soi] N latent positions [eoi]` after the current sequence, then append the image clean
        (t = 0) and [eoi]; returns the scaled latents [C, h, w]."""
        from showo.sampling import diffusion

        model, vocab, num, start = (
            self.model,
            self.vocab,
            self.model.config.num_image_tokens,
            self.ids.shape[1],
        )
        placeholders = [vocab.image_offset] * num
        segment = torch.tensor([[vocab.soi_id, *placeholders, vocab.eoi_id]], device=self.device)
        full = torch.cat([self.ids, segment], dim=1)
        mask = self._mask(full)
        prefix = FrozenPrefix(model, self.step.cache) if self.step is not None else None
        predict = diffusion.image_predictor(model, full, mask, start, prefix, 1, 0.0, self._frame_embeds())
        shape, _ = diffusion.latent_size(model)
        scheduler = diffusion.sampling_scheduler(model.objective, steps)
        latents = diffusion.denoise(predict, scheduler, (1, *shape), generator, self.device)
        clean = diffusion.clean_embeds(model, latents)
        self.ids = full
        self.frame_embeds.append(clean)
        if self.step is not None:
            self.last_logits = self.step.extend(segment, mask[:, :, start:], clean)
        return latents[0]

    def _frame_embeds(self) -> torch.Tensor | None:
        return torch.cat(self.frame_embeds) if self.frame_embeds else None

    def causal_frame(
        self, generator, temperature: float, top_k: int | None, top_p: float | None
    ) -> torch.Tensor:
        """[soi], then N codes one token at a time (image columns only), then [eoi]; returns codes [N]."""
        vocab, codes = self.vocab, []
        self.append_token(vocab.soi_id)
        for _ in range(self.model.config.num_image_tokens):
            logits = self.next_logits()[:, vocab.image_slice]
            code = int(next_token(logits, temperature, top_k, top_p, generator)[0])
            codes.append(code)
            self.append_token(code + vocab.image_offset)
        self.append_token(vocab.eoi_id)
        return torch.tensor(codes, device=self.device)

    def append_token(self, token: int) -> None:
        new = torch.tensor([[token]], device=self.device)
        self.ids = torch.cat([self.ids, new], dim=1)
        if self.step is not None:
            self.last_logits = self.step(new)

    def next_logits(self) -> torch.Tensor:
        if self.step is not None:
            return self.last_logits
        mask = self.model.kernel_mask(self._mask(self.ids))
        return self.model(self.ids, mask, image_embeds=self._frame_embeds())[:, -1].float()


@torch.no_grad()
def generate(
    model: torch.nn.Module,
    prompter,
    captions: Rows[Rows[str]],
    frames: int,
    steps: int = 12,
    temperature: float = 0.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
    use_cache: bool = True,
    image_options: Any = None,
    **image_kwargs,
) -> list[MixedSample]:
    """For each row, up to `frames` (caption, image) pairs; `captions[b]` gives the first captions.

    Text sampling uses `temperature` / `top_k` / `top_p`. Images use the model's own sampler with
    `image_options` (its `SamplerOptions`), or options built from `steps` (where the sampler has steps) and
    `image_kwargs` (e.g. schedule, temperature_schedule, and `image_temperature` as the sampler's
    temperature). A row ends early at [eos].
    """
    check_sampling(temperature, top_k, top_p)
    if frames < 1:
        raise ShowoError(f"frames must be at least 1, got {frames}")
    vocab = model.vocab
    budget = (prompter.max_text_len - 2) // frames
    if budget < 1:
        raise ShowoError(f"max_text_len {prompter.max_text_len} leaves no caption room for {frames} frames")
    objective = model.objective
    if image_options is None:
        if "image_temperature" in image_kwargs:
            image_kwargs["temperature"] = image_kwargs.pop("image_temperature")
        defaults = asdict(objective.options_from({"steps": steps}))  # steps: where the sampler has them
        image_options = objective.options(**{**defaults, **image_kwargs})
    allowed = torch.full((vocab.size,), float("-inf"), device=next(model.parameters()).device)
    allowed[: vocab.text_size] = 0.0
    allowed[vocab.soi_id] = 0.0
    samples = []
    for given in captions:
        tokens = [ids[:budget] for ids in prompter.tokenize(list(given[:frames]))]
        seq = Sequence(model, [vocab.lvg_id, vocab.bos_id], use_cache)
        texts, codes = [], []
        for frame in range(frames):
            if frame < len(tokens):
                caption = tokens[frame]
                for token in caption:
                    seq.append_token(token)
            else:
                caption = _decode_caption(seq, allowed, budget, temperature, top_k, top_p, generator)
                if caption is None:
                    break
            texts.append(prompter.tokenizer.decode(caption, skip_special_tokens=True).strip())
            codes.append(objective.sample_frame(seq, image_options, generator))
        samples.append(MixedSample(texts, torch.stack(codes) if codes else torch.empty(0, dtype=torch.long)))
    return samples


def _decode_caption(seq: Sequence, allowed, budget, temperature, top_k, top_p, generator) -> list[int] | None:
    """Text tokens up to [soi] (or the budget); None when the model ends the sequence with [eos] instead."""
    vocab, caption = seq.vocab, []
    while len(caption) < budget:
        token = int(next_token(seq.next_logits() + allowed, temperature, top_k, top_p, generator)[0])
        if token == vocab.soi_id:
            break
        if token == vocab.eos_id:
            return None
        caption.append(token)
        seq.append_token(token)
    return caption
