"""Key/value caching on the wrapped Phi: a frozen prefix for MaskGIT, a growing cache for token decoding
(`TokenStep`, the one cached one-token step of every token-by-token sampler).

Both run `model.llm`'s decoder directly with 4-D additive masks whose rows are the queries passed and whose
columns are every cached key plus the new ones, and explicit position ids (transformers 5 builds no
causal overlay on a 4-D mask, see docs/official-differences.md#environment).
"""

from __future__ import annotations

import functools
import inspect

import torch
from transformers import DynamicCache


def model_dtype(model: torch.nn.Module) -> torch.dtype:
    """The dtype masks must be built in (the embedding dtype, as the official training casts them)."""
    return next(model.parameters()).dtype


@functools.cache
def _cache_argument(forward_type: type) -> str:
    """The decoder's keyword for a Cache: `cache` where transformers has it (it deprecates `past_key_values`,
    the only name older releases inside our pinned range know)."""
    params = inspect.signature(forward_type.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def hidden_step(
    model: torch.nn.Module,
    ids: torch.Tensor,
    mask: torch.Tensor,
    positions: torch.Tensor,
    cache: DynamicCache,
    image_embeds: torch.Tensor | None = None,
) -> torch.Tensor:
    """Run `ids` [R,q] against `cache`, appending their keys/values; final hidden states [R,q,H].

    `image_embeds` [K,H]: the input embeddings of the K image positions of `ids` (continuous images,
    `ShowO.input_embeddings`); None: the ids' own embeddings.
    """
    decoder = model.llm.get_decoder()
    out = decoder(
        **model.input_embeddings(ids, image_embeds),
        attention_mask=model.kernel_mask(mask),
        position_ids=positions,
        use_cache=True,
        **{_cache_argument(type(decoder)): cache},
    )
    return out.last_hidden_state


def last_logits(
    model: torch.nn.Module,
    ids: torch.Tensor,
    mask: torch.Tensor,
    positions: torch.Tensor,
    cache: DynamicCache,
) -> torch.Tensor:
    """`hidden_step`, then the full head on the last position only: float32 logits [R,V] of the next token.

    (A prefill never materialises [R,q,V] logits: 0.7 GB in fp32 for 8 rows of 387 at Phi-1.5's 58,498.)
    """
    return model.head_logits(hidden_step(model, ids, mask, positions, cache)[:, -1])


def new_cache(model: torch.nn.Module) -> DynamicCache:
    return DynamicCache(config=model.llm.config)


class FrozenPrefix:
    """A cache holding positions [0, start) that every call reads and none keeps growing.

    Valid when no prefix row attends to a later position (true of the t2i text prefix, which never sees
    the image, and of everything before an image in a mixed sequence). Each call runs only the suffix
    queries against the prefix plus themselves, then crops the cache back to the prefix.
    """

    def __init__(self, model: torch.nn.Module, cache: DynamicCache) -> None:
        self.model, self.cache = model, cache

    @classmethod
    def prefill(
        cls, model: torch.nn.Module, ids: torch.Tensor, mask: torch.Tensor, start: int
    ) -> FrozenPrefix:
        """Cache ids[:, :start] under the top-left block of `mask` [R,1,L,L], positions 0..start-1."""
        cache = new_cache(model)
        positions = torch.arange(start, device=ids.device).unsqueeze(0).expand(ids.shape[0], -1)
        hidden_step(model, ids[:, :start], mask[:, :, :start, :start], positions, cache)
        return cls(model, cache)

    def __call__(
        self,
        ids: torch.Tensor,
        mask: torch.Tensor,
        positions: torch.Tensor,
        image_embeds: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Final hidden states [R,q,H] of the suffix `ids` [R,q]; `mask` [R,1,q,start+q] covers every key."""
        hidden = hidden_step(self.model, ids, mask, positions, self.cache, image_embeds)
        self.cache.crop(-ids.shape[1])
        return hidden


class TokenStep:
    """A growing cache over left-padded rows: prefill once, then one new token per row per call.

    Each new query sees every non-pad key of its row and every token added after the prefill; its position
    is one past the row's last. `columns` picks the logits returned (e.g. text ids only, image codes only).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        ids: torch.Tensor,
        mask: torch.Tensor,
        positions: torch.Tensor,
        pad_id: int,
        columns: slice = slice(None),
        image_embeds: torch.Tensor | None = None,
    ) -> None:
        self.model, self.dtype, self.columns = model, mask.dtype, columns
        self.cache = new_cache(model)
        self.visible = ids != pad_id
        self.next_position = positions[:, -1:] + 1
        self.first = self._logits(ids, mask, positions, image_embeds)

    def _logits(
        self,
        ids: torch.Tensor,
        mask: torch.Tensor,
        positions: torch.Tensor,
        image_embeds: torch.Tensor | None = None,
    ) -> torch.Tensor:
        hidden = hidden_step(self.model, ids, mask, positions, self.cache, image_embeds)[:, -1]
        return self.model.head_logits(hidden, self.columns)

    def extend(
        self, ids: torch.Tensor, mask: torch.Tensor, image_embeds: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Append a block `ids` [R,q] under `mask` [R,1,q,cached+q] (e.g. a finished image, continuous ones
        with their `image_embeds` [K,H]); last logits."""
        positions = self.next_position + torch.arange(ids.shape[1], device=ids.device)
        self.visible = torch.cat([self.visible, torch.ones_like(ids, dtype=torch.bool)], dim=1)
        self.next_position = positions[:, -1:] + 1
        return self._logits(ids, mask, positions, image_embeds)

    def __call__(self, tokens: torch.Tensor) -> torch.Tensor:
        """Logits after appending `tokens` [R,1]."""
        visible = torch.cat([self.visible, torch.ones_like(tokens, dtype=torch.bool)], dim=1)
        row = torch.zeros(visible.shape, dtype=self.dtype, device=tokens.device)
        row = row.masked_fill(~visible, torch.finfo(self.dtype).min)[:, None, None, :]
        return self.extend(tokens, row)
