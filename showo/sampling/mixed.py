"""Mixed-modality generation: captions and MaskGIT images alternating in one sequence (keyframes + captions).

The sequence follows the mixed training layout (`Prompter.mixed`):
`[lvg][bos] cap_1 [soi] img_1 [eoi] cap_2 [soi] img_2 [eoi] ... [eos]`, under the mixed omni-attention
mask (causal, each image block bidirectional). Given captions are used as they are; missing ones are
decoded token by token until the model opens an image ([soi]), ends the sequence ([eos]) or fills the
caption budget (then an image is opened). Each image is a MaskGIT run whose prefix (everything before its
[soi]) is a frozen KV cache; the finished image is then appended to the cache for the text that follows.
Rows are generated one at a time (their captions differ in length). No guidance: the mixed stream is
trained without a null condition.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from showo.attention import omni_attention_mask
from showo.errors import ShowoError
from showo.sampling import maskgit
from showo.sampling.kv import FrozenPrefix, head, last_logits, model_dtype, new_cache
from showo.sampling.next_token import check_sampling, next_token


@dataclass
class MixedSample:
    """One generated sequence: a caption per frame and the frames' raw codes [F, N]."""

    captions: list[str]
    codes: torch.Tensor


class _Sequence:
    """The growing token sequence of one row, with or without a KV cache over it."""

    def __init__(self, model, ids: list[int], use_cache: bool):
        self.model, self.vocab = model, model.vocab
        self.device = next(model.parameters()).device
        self.dtype = model_dtype(model)
        self.ids = torch.tensor([ids], device=self.device)
        self.cache = new_cache(model) if use_cache else None
        self.last_logits = self._extend_cache(self.ids, self._mask(self.ids)) if use_cache else None

    def _mask(self, ids: torch.Tensor) -> torch.Tensor:
        return omni_attention_mask(ids, self.vocab, "mixed", dtype=self.dtype)

    def _positions(self, start: int, count: int) -> torch.Tensor:
        return torch.arange(start, start + count, device=self.device).unsqueeze(0)

    def _extend_cache(self, new: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        cached = self.cache.get_seq_length()
        return last_logits(self.model, new, rows, self._positions(cached, new.shape[1]), self.cache)

    def image_codes(self, steps: int, generator: torch.Generator | None, **image_kwargs) -> torch.Tensor:
        """MaskGIT over `[soi] N masks [eoi]` after the current sequence; appends the result."""
        vocab, num, start = self.vocab, self.model.config.num_image_tokens, self.ids.shape[1]
        segment = torch.tensor([[vocab.soi_id, *([vocab.mask_id] * num), vocab.eoi_id]], device=self.device)
        full = torch.cat([self.ids, segment], dim=1)
        mask = self._mask(full)
        prefix = FrozenPrefix(self.model, self.cache) if self.cache is not None else None
        positions = self._positions(start, num + 2)

        image, codes = slice(start + 1, start + 1 + num), vocab.image_slice

        def image_logits(current: torch.Tensor, select: torch.Tensor) -> torch.Tensor:
            full[:, image] = current
            if prefix is not None:
                hidden = prefix(full[:, start:], mask[:, :, start:], positions)[:, 1 : 1 + num]
                return head(self.model, hidden[select], codes)
            return self.model(full, mask)[:, image, codes][select]

        result = maskgit.decode_grid(
            image_logits, segment[:, 1:-1], vocab, steps, generator=generator, **image_kwargs
        )
        full[:, image] = result + vocab.image_offset
        self.ids = full
        if self.cache is not None:
            self.last_logits = self._extend_cache(full[:, start:], mask[:, :, start:])
        return result[0]

    def append_token(self, token: int) -> None:
        new = torch.tensor([[token]], device=self.device)
        self.ids = torch.cat([self.ids, new], dim=1)
        if self.cache is not None:  # a text query sees every earlier position (no pads in this sequence)
            row = torch.zeros(1, 1, 1, self.ids.shape[1], dtype=self.dtype, device=self.device)
            self.last_logits = self._extend_cache(new, row)

    def next_logits(self) -> torch.Tensor:
        if self.cache is not None:
            return self.last_logits
        return self.model(self.ids, self._mask(self.ids))[:, -1].float()


@torch.no_grad()
def generate(
    model: torch.nn.Module,
    prompter,
    captions: Sequence[Sequence[str]],
    frames: int,
    steps: int = 12,
    temperature: float = 0.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
    use_cache: bool = True,
    **image_kwargs,
) -> list[MixedSample]:
    """For each row, up to `frames` (caption, image) pairs; `captions[b]` gives the first captions.

    Text sampling uses `temperature` / `top_k` / `top_p`; `image_kwargs` (schedule, temperature_schedule,
    and `image_temperature` as MaskGIT's tau0) go to the MaskGIT loop. A row ends early at [eos].
    """
    check_sampling(temperature, top_k, top_p)
    if frames < 1:
        raise ShowoError(f"frames must be at least 1, got {frames}")
    vocab = model.vocab
    budget = (prompter.max_text_len - 2) // frames
    if budget < 1:
        raise ShowoError(f"max_text_len {prompter.max_text_len} leaves no caption room for {frames} frames")
    if "image_temperature" in image_kwargs:
        image_kwargs["temperature"] = image_kwargs.pop("image_temperature")
    allowed = torch.full((vocab.size,), float("-inf"), device=next(model.parameters()).device)
    allowed[: vocab.text_size] = 0.0
    allowed[vocab.soi_id] = 0.0
    samples = []
    for given in captions:
        tokens = [ids[:budget] for ids in prompter.tokenize(list(given[:frames]))]
        seq = _Sequence(model, [vocab.lvg_id, vocab.bos_id], use_cache)
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
            codes.append(seq.image_codes(steps, generator, **image_kwargs))
        samples.append(MixedSample(texts, torch.stack(codes) if codes else torch.empty(0, dtype=torch.long)))
    return samples


def _decode_caption(
    seq: _Sequence, allowed, budget, temperature, top_k, top_p, generator
) -> list[int] | None:
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
