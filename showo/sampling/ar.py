"""Autoregressive image sampling for models trained with the AR image objective (`showo.objectives.ar`).

The t2i layout `P.. [t2i][bos] text [eos] [soi] img [eoi]` under a plain causal mask: the logits at
position p predict the image token at p+1, so the prompt through [soi] is prefilled once and the N codes
follow one at a time on the cache (N forward passes of one token, against MaskGIT's T passes of N+2).
Guidance is the same MUSE-style combination as MaskGIT, with the unconditional rows (empty prompt) fed
the same sampled tokens. `use_cache=False` recomputes the whole prefix each step (the reference).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from tqdm.auto import tqdm

from showo.attention import omni_attention_mask
from showo.errors import ShowoError
from showo.sampling.guidance import guided, guided_rows
from showo.sampling.kv import TokenStep, model_dtype
from showo.sampling.next_token import check_sampling, next_token


@torch.no_grad()
def generate(
    model: torch.nn.Module,
    prompter,
    prompts: Sequence[str],
    guidance: float = 0.0,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
    use_cache: bool = True,
    progress: bool = False,
) -> torch.Tensor:
    """Raw codes [B, N] sampled left to right (raster order)."""
    check_sampling(temperature, top_k, top_p)
    if guidance < 0:
        raise ShowoError(f"guidance must be >= 0, got {guidance}")
    vocab = model.vocab
    device = next(model.parameters()).device
    batch, num_tokens = len(prompts), prompter.num_image_tokens
    masked = torch.full((batch, num_tokens), vocab.mask_id, dtype=torch.long)
    ids = guided_rows(prompter, prompts, masked, guidance)
    ids = ids[:, : ids.shape[1] - num_tokens - 1].to(device)  # the prompt through [soi]
    rows, dtype = ids.shape[0], model_dtype(model)
    offset, size = vocab.image_offset, vocab.codebook_size
    codes_only = slice(offset, offset + size)
    step = None
    if use_cache:  # the head runs only on the image-code columns (the next token is always a code)
        positions = torch.arange(ids.shape[1], device=device).unsqueeze(0).expand(rows, -1)
        mask = omni_attention_mask(ids, vocab, "causal", dtype)
        step = TokenStep(model, ids, mask, positions, vocab.pad_id, columns=codes_only)
        logits = step.first

    codes = []
    for index in tqdm(range(num_tokens), desc="ar", disable=not progress, leave=False):
        if step is None:
            mask = model.kernel_mask(omni_attention_mask(ids, vocab, "causal", dtype))
            logits = model(ids, mask)[:, -1, codes_only].float()
        image_logits = guided(logits, batch, guidance)
        code = next_token(image_logits, temperature, top_k, top_p, generator)
        codes.append(code)
        if index == num_tokens - 1:
            break
        token = (code + offset).repeat(rows // batch).unsqueeze(1)
        ids = torch.cat([ids, token], dim=1)
        if step is not None:
            logits = step(token)
    return torch.stack(codes, dim=1)
