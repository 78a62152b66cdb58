"""Understanding decode (captioning, VQA, chat): batched, left-padded, with a key/value cache.

The prompt `[PAD].. [mmu][soi] img [eoi][bos] USER: \\n{q} ASSISTANT:` is prefilled once under the mmu
omni-attention mask; then one token per step, each new query seeing every non-pad key. Real tokens are
numbered from 0 after the left padding (as in the right-padded training rows), so a row decodes the same
alone or in a batch. Only text ids (below [PAD]) can be chosen, so the cached path applies the LM head to
those columns of the last position alone, and columns that are padding in every row are dropped before the
prefill (no real query sees a pad key, and positions count real tokens only, so neither changes a token).
`use_cache=False` recomputes the whole sequence each step (the official way) and is kept as the reference the
cache is tested against.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from tqdm.auto import tqdm

from showo.attention import omni_attention_mask
from showo.sampling.kv import TokenStep, model_dtype
from showo.sampling.next_token import check_sampling, next_token


def _positions(ids: torch.Tensor, pad_id: int) -> torch.Tensor:
    """RoPE positions that start at 0 on the first real token of each left-padded row."""
    return ((ids != pad_id).long().cumsum(dim=1) - 1).clamp_min(0)


def trim_left_padding(ids: torch.Tensor, pad_id: int) -> torch.Tensor:
    """Drop the leading columns that are [PAD] in every row of a left-padded batch."""
    real = (ids != pad_id).any(dim=0)
    return ids[:, int(real.long().argmax()) :] if real.any() else ids


class _Recompute:
    """The whole sequence, prompt and generated tokens, through `model.forward` at every step."""

    def __init__(self, model, ids, pad_id, image_embeds=None):
        self.model, self.ids, self.pad_id, self.image_embeds = model, ids, pad_id, image_embeds
        self.first = self._logits()

    def _logits(self) -> torch.Tensor:
        mask = omni_attention_mask(self.ids, self.model.vocab, "mmu", dtype=model_dtype(self.model))
        positions = _positions(self.ids, self.pad_id)
        return (
            self.model.llm(
                **self.model.input_embeddings(self.ids, self.image_embeds),
                attention_mask=self.model.kernel_mask(mask),
                position_ids=positions,
            )
            .logits[:, -1]
            .float()
        )

    def __call__(self, tokens: torch.Tensor) -> torch.Tensor:
        self.ids = torch.cat([self.ids, tokens], dim=1)
        return self._logits()


@torch.no_grad()
def decode_ids(
    model: torch.nn.Module,
    prompter,
    image_ids: torch.Tensor,
    questions: Sequence[str],
    max_new_tokens: int = 100,
    temperature: float = 0.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
    use_cache: bool = True,
    progress: bool = False,
    template: str = "mmu",
) -> list[list[int]]:
    """Generated text ids per row, up to (not including) end of text. image_ids: unified ids [B,N], or the
    scaled latents [B,C,h,w] of a continuous objective (seen clean, t = 0, as in training).

    ``template``: the prompt form (``Prompter.mmu_gen``): "mmu" (official) or "instruct".
    """
    check_sampling(temperature, top_k, top_p)
    vocab = model.vocab
    device = next(model.parameters()).device
    embeds = None
    if image_ids.is_floating_point():
        from showo.sampling.diffusion import clean_embeds

        embeds = clean_embeds(model, image_ids.to(device))
        image_ids = torch.full((len(image_ids), prompter.num_image_tokens), vocab.image_offset)
    ids = trim_left_padding(prompter.mmu_gen(image_ids, list(questions), template), vocab.pad_id).to(device)
    if use_cache:
        mask = omni_attention_mask(ids, vocab, "mmu", dtype=model_dtype(model))
        text = slice(0, vocab.text_size)  # only text ids can be chosen: the head's text columns alone
        step = TokenStep(model, ids, mask, _positions(ids, vocab.pad_id), vocab.pad_id, text, embeds)
    else:
        step = _Recompute(model, ids, vocab.pad_id, embeds)
    logits = step.first
    done = torch.zeros(ids.shape[0], dtype=torch.bool, device=device)
    out: list[torch.Tensor] = []
    for index in tqdm(range(max_new_tokens), desc="decode", disable=not progress, leave=False):
        token = next_token(logits[:, : vocab.text_size], temperature, top_k, top_p, generator)
        token = torch.where(done, torch.full_like(token, vocab.eos_id), token)
        out.append(token)
        done |= token == vocab.eos_id
        if done.all() or index == max_new_tokens - 1:
            break
        logits = step(token.unsqueeze(1))
    rows = torch.stack(out, dim=1).tolist() if out else [[] for _ in range(ids.shape[0])]
    return [row[: row.index(vocab.eos_id)] if vocab.eos_id in row else row for row in rows]


def decode(
    model: torch.nn.Module, prompter, image_ids: torch.Tensor, questions: Sequence[str], **kwargs
) -> list[str]:
    """Answers as strings (see `decode_ids` for the arguments)."""
    return [
        prompter.tokenizer.decode(row, skip_special_tokens=True).strip()
        for row in decode_ids(model, prompter, image_ids, questions, **kwargs)
    ]
