"""Omni-attention masks (docs/official-differences.md#attention), built from the ids alone.

One rule per task, stated per (query i, key j) in ``allowed`` below and shared by the dense additive mask
and the optional FlexAttention block mask:

- every task: a non-pad query never sees a pad key; a pad query sees what its task allows (so no row is ever
  fully masked: every query sees itself);
- ``t2i`` / ``lm`` / ``mixed``: causal, plus each ``[soi] .. [eoi]`` block (delimiters included) is
  bidirectional within itself. For t2i (one image, last) this is the official
  ``create_attention_mask_predict_next(rm_pad_in_image=True)``: image rows see every non-pad position; for lm
  (no image, right padding) it is plain causal;
- ``mmu``: causal, plus every query sees the prefix up to its row's first [eoi] (``[mmu][soi] img [eoi]``
  bidirectional, task token included), as ``create_attention_mask_for_mmu`` but per row rather than with the
  first row's EOI for the whole batch; pads are hidden, so left-padded decoding prompts work too;
- ``causal``: plain causal over everything (the image block of the AR objective), pads hidden.

Which rule a training row gets is its image objective's choice (``ImageObjective.attention``).

Masks are additive floats ``[B, 1, L, L]``: 0 = attend, ``finfo(dtype).min`` = blocked (bool masks are
silently ignored by transformers' eager attention). ``omni_block_mask`` turns the same rule into a
FlexAttention ``BlockMask`` for models built with ``attn_implementation="flex"`` (checked on CPU in torch's
eager flex path; ``torch.compile`` fuses it on GPU).
"""

from __future__ import annotations

from typing import Any

import torch

from showo.errors import ShowoError
from showo.vocab import UnifiedVocab

RULES = ("t2i", "lm", "mmu", "mixed", "causal")
FLEX_KERNEL_OPTIONS = (
    "BLOCK_M",
    "BLOCK_N",
    "BLOCK_M1",
    "BLOCK_N1",
    "BLOCK_M2",
    "BLOCK_N2",
    "num_stages",
    "num_warps",
)
"""The Triton settings of the fused flex kernels a recipe may set (``*1``/``*2``: the backward's blocks)."""
# Prompting tasks that share a mask rule with another.
TASK_ALIASES = {"c2i": "t2i", "t2i_gen": "t2i", "instruct": "mmu", "mmu_gen": "mmu"}


def rule_name(task: str) -> str:
    """The mask rule of a task (aliases resolved); an unknown name is a one-line error."""
    task = TASK_ALIASES.get(task, task)
    if task not in RULES:
        raise ShowoError(f"unknown attention rule {task!r}; expected one of {', '.join(RULES)}")
    return task


def token_roles(input_ids: torch.Tensor, vocab: UnifiedVocab) -> dict[str, torch.Tensor]:
    """Per-position facts the rule needs: pad flag, image-block index (0 = text), first-EOI position."""
    soi, eoi = input_ids == vocab.soi_id, input_ids == vocab.eoi_id
    opened, closed = soi.long().cumsum(-1), eoi.long().cumsum(-1)
    in_image = (opened > closed) | soi | eoi
    block = torch.where(in_image, opened, torch.zeros_like(opened))
    first_eoi = torch.where(eoi.any(-1), eoi.long().argmax(-1), torch.full_like(opened[:, 0], -1))
    return {"pad": input_ids == vocab.pad_id, "block": block, "first_eoi": first_eoi}


def allowed(
    b: torch.Tensor, q: torch.Tensor, k: torch.Tensor, roles: dict[str, torch.Tensor], task: str
) -> torch.Tensor:
    """The rule for batch rows ``b``, queries ``q``, keys ``k`` (broadcastable index tensors).

    Called with broadcast index grids for the dense mask and with scalars as a FlexAttention ``mask_mod``.
    """
    pad, block = roles["pad"], roles["block"]
    ok = k <= q
    if task in ("t2i", "lm", "mixed"):
        bq = block[b, q]
        ok = ok | ((bq > 0) & (bq == block[b, k]))
    elif task == "mmu":
        ok = ok | (k <= roles["first_eoi"][b])
    return ok & (pad[b, q] | ~pad[b, k])


def omni_attention_mask(
    input_ids: torch.Tensor, vocab: UnifiedVocab, task: str, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Additive float mask ``[B, 1, L, L]`` for rows of one task."""
    task = rule_name(task)
    if input_ids.dim() != 2:
        raise ShowoError(f"input_ids must be [B, L], got shape {tuple(input_ids.shape)}")
    batch, length = input_ids.shape
    device = input_ids.device
    b = torch.arange(batch, device=device)[:, None, None]
    q = torch.arange(length, device=device)[None, :, None]
    k = torch.arange(length, device=device)[None, None, :]
    ok = allowed(b, q, k, token_roles(input_ids, vocab), task)
    mask = torch.zeros(ok.shape, dtype=dtype, device=device)
    return mask.masked_fill_(~ok, torch.finfo(dtype).min).unsqueeze(1)


def batch_attention_mask(
    parts: list[tuple[str, torch.Tensor]], vocab: UnifiedVocab, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Masks of a concatenated multi-task batch: ``[(task, ids), ...]`` in row order -> ``[sum B, 1, L, L]``."""
    return torch.cat([omni_attention_mask(ids, vocab, task, dtype) for task, ids in parts if len(ids)], 0)


def omni_block_mask(input_ids: torch.Tensor, vocab: UnifiedVocab, task: str) -> Any:
    """The same rule as a FlexAttention ``BlockMask`` (for ``attn_implementation="flex_attention"``).

    Works on CPU in torch's eager (unfused) flex path and fused under ``torch.compile`` on GPU; the dense mask
    stays the default everywhere.
    """
    from torch.nn.attention.flex_attention import create_block_mask

    task = rule_name(task)
    roles = token_roles(input_ids, vocab)

    def mask_mod(b: torch.Tensor, h: torch.Tensor, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        return allowed(b, q, k, roles, task)

    batch, length = input_ids.shape
    return create_block_mask(mask_mod, B=batch, H=None, Q_LEN=length, KV_LEN=length, device=input_ids.device)


def batch_block_mask(
    parts: list[tuple[str, torch.Tensor]], vocab: UnifiedVocab, compiled: bool = False
) -> Any:
    """``batch_attention_mask`` as one FlexAttention ``BlockMask``: each row follows its own task's rule.

    ``compiled`` builds the mask through ``torch.compile`` (about 10x faster than the eager vmap on a GPU).
    """
    from torch.nn.attention.flex_attention import create_block_mask

    parts = [(rule_name(task), ids) for task, ids in parts if len(ids)]
    ids = torch.cat([p for _, p in parts])
    roles = token_roles(ids, vocab)
    rules = [task for task, _ in parts]
    row_rule = torch.cat([torch.full((len(p),), i, device=ids.device) for i, (_, p) in enumerate(parts)])

    def mask_mod(b: torch.Tensor, h: torch.Tensor, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        out = torch.zeros_like(q, dtype=torch.bool)
        for i, task in enumerate(rules):
            out = out | ((row_rule[b] == i) & allowed(b, q, k, roles, task))
        return out

    build = torch.compile(create_block_mask) if compiled else create_block_mask
    batch, length = ids.shape
    return build(mask_mod, B=batch, H=None, Q_LEN=length, KV_LEN=length, device=ids.device)


def dense_to_block_mask(mask: torch.Tensor) -> Any:
    """A FlexAttention ``BlockMask`` allowing exactly the zeros of an additive mask ``[B, 1, Q, KV]``.

    For the samplers, whose masks are slices of the omni mask over a KV cache (queries are the new
    positions, keys every cached one): the same rule reaches a flex model without a second description.
    """
    from torch.nn.attention.flex_attention import create_block_mask

    ok = mask[:, 0] == 0

    def mask_mod(b: torch.Tensor, h: torch.Tensor, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        return ok[b, q, k]

    batch, queries, keys = ok.shape
    return create_block_mask(mask_mod, B=batch, H=None, Q_LEN=queries, KV_LEN=keys, device=mask.device)


def sdpa_kernel(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    segments: Any = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """The attention of models built with ``attn_implementation="sdpa"`` (registered with transformers).

    transformers' own SDPA path, except for packed rows handed ``segments``
    (``showo.packing.SegmentAttention``): then the bucket slots are gathered from the flattened packed positions
    in one index per tensor, every bucket of similar-length samples attends within itself under its samples'
    own masks in one SDPA call, and one index puts the outputs back. Positions of no sample (the rows' tail)
    come out as zeros.
    """
    if segments is None:
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(
            module, query, key, value, attention_mask, scaling=scaling, dropout=dropout, **kwargs
        )
    dropout_p = dropout if module.training else 0.0
    return _segment_attention(query, key, value, segments, scaling, dropout_p), None


@torch.compiler.disable
def _segment_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    segments: Any,
    scaling: float | None,
    dropout_p: float,
) -> torch.Tensor:
    """The bucketed attention of ``sdpa_kernel``, left out of ``torch.compile`` (`model.compile`): its bucket
    layout changes every step and would recompile the decoder each time; the layers around it compile."""
    rows, heads, width, dim = query.shape
    slots = [
        t.transpose(1, 2).reshape(rows * width, t.shape[1], dim).index_select(0, segments.gather)
        for t in (query, key, value)
    ]
    # split, not slices: a slice's backward writes a zero tensor of the whole input per bucket
    chunks = [t.split([n * size for n, size, _ in segments.buckets]) for t in slots]
    outs = []
    for (n, size, mask), *qkv in zip(segments.buckets, *chunks):
        q, k, v = (t.view(n, size, t.shape[1], dim).transpose(1, 2) for t in qkv)
        out = torch.nn.functional.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=None if mask is None else mask.to(q.dtype),
            is_causal=mask is None,
            dropout_p=dropout_p,
            scale=scaling,
            enable_gqa=heads != key.shape[1],
        )
        outs.append(out.transpose(1, 2).reshape(n * size, heads, dim))
    outs.append(query.new_zeros(1, heads, dim))  # what the rows' tail padding reads
    merged = torch.cat(outs).index_select(0, segments.scatter)
    return merged.view(rows, width, heads, dim)


def flex_attention_kernel(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: Any,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """The attention of models built with ``attn_implementation="flex"`` (registered with transformers).

    On accelerators it is transformers' own flex path (``torch.compile``d); on a CPU it runs torch's eager
    flex kernel instead, because inductor's CPU flex template fails to build for some decoding shapes (one
    query over a KV cache) in torch 2.13. The module's ``flex_kernel_options`` (``ShowO.set_flex_kernel_options``)
    reach the kernel as its Triton settings; a kernel too big for the GPU's shared memory is a one-line error
    naming that setting.
    """
    options = getattr(module, "flex_kernel_options", None)
    if query.device.type != "cpu":
        from transformers.integrations.flex_attention import flex_attention_forward

        kwargs["kernel_options"] = options
        try:
            return flex_attention_forward(
                module, query, key, value, attention_mask, scaling=scaling, dropout=dropout, **kwargs
            )
        except RuntimeError as err:  # inductor's compile failure wraps triton's OutOfResources
            if "out of resource" not in str(err):
                raise
            raise ShowoError(
                f"flex attention: the fused kernel ({options or 'torch default settings'}) needs more shared "
                "memory than this GPU has; set model.flex_kernel_options to smaller blocks or fewer stages, "
                "e.g. {BLOCK_M: 64, BLOCK_N: 64, num_stages: 2}"
            ) from None
    from torch.nn.attention import flex_attention as flex

    if not isinstance(attention_mask, flex.BlockMask):
        raise ShowoError(f"a flex model needs a FlexAttention BlockMask, got {type(attention_mask).__name__}")
    out = flex.flex_attention(
        query,
        key,
        value,
        block_mask=attention_mask,
        scale=scaling,
        enable_gqa=query.shape[1] != key.shape[1],
        kernel_options=options,
    )
    return out.transpose(1, 2).contiguous(), None
