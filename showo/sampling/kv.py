"""Key/value caching on the wrapped Phi: a frozen prefix for MaskGIT, a growing cache for token decoding.

Both run `model.llm`'s decoder directly with 4-D additive masks whose rows are the queries passed and whose
columns are every cached key plus the new ones, and explicit position ids (transformers 5 builds no
causal overlay on a 4-D mask, see docs/official-differences.md#environment).
"""

from __future__ import annotations

import functools
import inspect

import torch
import torch.nn.functional as F
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
) -> torch.Tensor:
    """Run `ids` [R,q] against `cache`, appending their keys/values; final hidden states [R,q,H]."""
    decoder = model.llm.get_decoder()
    out = decoder(
        input_ids=ids,
        attention_mask=mask,
        position_ids=positions,
        use_cache=True,
        **{_cache_argument(type(decoder)): cache},
    )
    return out.last_hidden_state


def head(model: torch.nn.Module, hidden: torch.Tensor, columns: slice) -> torch.Tensor:
    """float32 logits of only the vocabulary `columns` (e.g. the image codes: 8192 of Phi-1.5's 58,498).

    Equal to slicing the full logits. A ZeRO-3 partitioned head (weights gathered only inside its own
    forward) runs whole and is sliced after.
    """
    lm_head = model.llm.get_output_embeddings()
    if hasattr(lm_head.weight, "ds_id"):
        return lm_head(hidden)[..., columns].float()
    bias = lm_head.bias[columns] if lm_head.bias is not None else None
    return F.linear(hidden, lm_head.weight[columns], bias).float()


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
    return head(model, hidden_step(model, ids, mask, positions, cache)[:, -1], slice(None))


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

    def __call__(self, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Final hidden states [R,q,H] of the suffix `ids` [R,q]; `mask` [R,1,q,start+q] covers every key."""
        hidden = hidden_step(self.model, ids, mask, positions, self.cache)
        self.cache.crop(-ids.shape[1])
        return hidden
