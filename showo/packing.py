"""Sequence packing: several prompted samples per row up to a token budget, attention kept per sample.

Rows arrive in the fixed layouts of ``showo.prompting``, padded to their length L (a short caption costs as
much as a long one). Packing drops the [PAD] tokens, lays the remaining tokens of several samples end to end
in rows of ``budget`` tokens (first-fit decreasing, ties in batch order) and records, for every packed
position, the sample and the position it came from. The omni-attention rule is then evaluated in each
sample's own coordinates, plus "same sample" (document-aware attention): a packed sample sees exactly what it
saw alone. Positions restart at 0 per sample; a sample's left padding shifted its positions before, which
RoPE ignores (attention depends on position differences only). Hidden states are scattered back to the
padded layout, so the per-task losses are computed by the unchanged loss code and keep their token means.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from showo.attention import omni_attention_mask, rule_name, token_roles
from showo.errors import ShowoError
from showo.vocab import UnifiedVocab

BUCKET_SLACK = 0.125


@dataclass
class PackedRows:
    """Packed rows ``[R, T]`` and, per position, where it came from (``sample`` -1 on the tail padding)."""

    ids: torch.Tensor
    position_ids: torch.Tensor
    sample: torch.Tensor
    source: torch.Tensor
    unpacked_shape: tuple[int, int]
    segments: list[list[tuple[int, int, int]]]
    """Per packed row, its samples as (sample, first column, length)."""

    def to(self, device: torch.device) -> PackedRows:
        move = (
            t.to(device, non_blocking=True) for t in (self.ids, self.position_ids, self.sample, self.source)
        )
        return PackedRows(*move, self.unpacked_shape, self.segments)

    @property
    def tokens(self) -> int:
        """Positions that hold a sample's token (the rest is tail padding)."""
        return int((self.sample >= 0).sum())


def first_fit_decreasing(lengths: Sequence[int], budget: int) -> list[list[int]]:
    """Sample indices per row; each row's lengths sum to at most ``budget``."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    rows: list[list[int]] = []
    room: list[int] = []
    for i in order:
        if lengths[i] > budget:
            raise ShowoError(f"a sample of {lengths[i]} tokens does not fit the packing budget of {budget}")
        fit = next((r for r, free in enumerate(room) if free >= lengths[i]), None)
        if fit is None:
            rows.append([i])
            room.append(budget - lengths[i])
        else:
            rows[fit].append(i)
            room[fit] -= lengths[i]
    return rows


def pack(input_ids: torch.Tensor, pad_id: int, budget: int) -> PackedRows:
    """Pack the non-pad tokens of ``input_ids`` ``[N, L]`` into rows of ``budget`` tokens.

    The bookkeeping runs on the CPU (a few small tensors per sample); the result lives on the ids' device.
    """
    device = input_ids.device
    input_ids = input_ids.cpu()
    keep = input_ids != pad_id
    lengths = keep.sum(1).tolist()
    rows = first_fit_decreasing(lengths, budget)
    width = max(sum(lengths[i] for i in row) for row in rows) if rows else 0
    sample = torch.full((len(rows), width), -1, dtype=torch.long)
    source = torch.zeros_like(sample)
    position = torch.zeros_like(sample)
    columns = [keep[i].nonzero().squeeze(1) for i in range(len(lengths))]
    segments: list[list[tuple[int, int, int]]] = []
    for r, row in enumerate(rows):
        start = 0
        segments.append([])
        for i in row:
            n = lengths[i]
            sample[r, start : start + n] = i
            source[r, start : start + n] = columns[i]
            position[r, start : start + n] = torch.arange(n)
            segments[r].append((i, start, n))
            start += n
    ids = torch.where(sample >= 0, input_ids[sample.clamp(min=0), source], pad_id)
    shape = (input_ids.shape[0], input_ids.shape[1])
    return PackedRows(ids, position, sample, source, shape, segments).to(device)


@dataclass
class SegmentAttention:
    """Buckets of packed samples for ``showo.attention.sdpa_kernel``. ``gather``: the flat packed position
    each bucket slot reads, all buckets one after the other (bucket ``b`` is ``n_b x L_b`` slots, row-major);
    ``buckets``: per bucket ``(n_b, L_b)`` and the samples' own additive masks ``[n_b, 1, L_b, L_b]`` (None:
    plain causal); ``scatter``: for each flat packed position, the slot holding its output (one past the
    last slot for the rows' tail padding, which reads a zero)."""

    gather: torch.Tensor
    buckets: list[tuple[int, int, torch.Tensor | None]]
    scatter: torch.Tensor


def _rule_index(rules: Sequence[str]) -> tuple[list[str], list[int]]:
    names = sorted({rule_name(r) for r in rules})
    return names, [names.index(rule_name(r)) for r in rules]


def _packed_rule(
    packed: PackedRows, unpacked_ids: torch.Tensor, rules: Sequence[str], vocab: UnifiedVocab
) -> dict[str, torch.Tensor]:
    """What the omni rule needs of every packed position ``[R, T]`` beyond ``packed.sample`` and
    ``packed.source``, each fact one lookup: ``block`` (its bidirectional image block; 0 for none or where
    the rule has no blocks) and ``prefix`` (the last column every query of an mmu sample sees, else -1).
    Also ``causal`` ``[N]``: the samples whose rule reduces to plain causal (no block, no prefix)."""
    roles = token_roles(unpacked_ids, vocab)
    kinds = [rule_name(r) for r in rules]
    device = unpacked_ids.device
    blocks = torch.tensor([k in ("t2i", "lm", "mixed") for k in kinds], device=device)
    prefixed = torch.tensor([k == "mmu" for k in kinds], device=device)
    row_block = torch.where(blocks[:, None], roles["block"], 0)
    row_prefix = torch.where(prefixed, roles["first_eoi"], -1)
    real = packed.sample >= 0
    s = packed.sample.clamp(min=0)
    return {
        "block": torch.where(real, row_block[s, packed.source], 0),
        "prefix": torch.where(real, row_prefix[s], -1),
        "causal": (row_block.amax(1) == 0) & (row_prefix < 0),
    }


def _allowed_in_sample(
    cq: torch.Tensor, ck: torch.Tensor, bq: torch.Tensor, bk: torch.Tensor, pq: torch.Tensor
) -> torch.Tensor:
    """The omni rule between a query and a key of one sample, from their source columns (``cq``, ``ck``),
    image blocks and the query's mmu prefix: causal, plus the image block both ways, plus the prefix."""
    return (ck <= cq) | ((bq > 0) & (bq == bk)) | (ck <= pq)


def packed_attention_mask(
    packed: PackedRows,
    unpacked_ids: torch.Tensor,
    rules: Sequence[str],
    vocab: UnifiedVocab,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Additive float mask ``[R, 1, T, T]``; ``rules`` names each unpacked row's attention task.

    Block-diagonal: each sample's block is its own unpacked omni mask at its non-pad positions; tail padding
    sees only itself. What an eager model runs packed rows with (``segment_attention`` is the sdpa way).
    """
    own = torch.empty(*unpacked_ids.shape, unpacked_ids.shape[1], dtype=dtype, device=unpacked_ids.device)
    names, index = _rule_index(rules)
    for i, name in enumerate(names):
        rows = torch.tensor([r for r, k in enumerate(index) if k == i], device=unpacked_ids.device)
        own[rows] = omni_attention_mask(unpacked_ids[rows], vocab, name, dtype).squeeze(1)
    keep = (unpacked_ids != vocab.pad_id).cpu()
    rows, width = packed.ids.shape
    mask = torch.full((rows, width, width), torch.finfo(dtype).min, dtype=dtype, device=packed.ids.device)
    mask.diagonal(dim1=1, dim2=2).masked_fill_(packed.sample < 0, 0.0)
    for r, segments in enumerate(packed.segments):
        for s, start, n in segments:
            cols = keep[s].nonzero().squeeze(1)
            mask[r, start : start + n, start : start + n] = own[s][cols][:, cols]
    return mask.unsqueeze(1)


def length_buckets(lengths: Sequence[int], slack: float = BUCKET_SLACK) -> list[list[int]]:
    """Sample indices grouped by length, longest first: a bucket takes samples down to ``1 - slack`` of
    its longest, so padding a bucket to its longest wastes at most that share of its attention rows."""
    buckets: list[list[int]] = []
    longest = 0
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        if not buckets or lengths[i] < (1 - slack) * longest:
            buckets.append([])
            longest = lengths[i]
        buckets[-1].append(i)
    return buckets


def _bucket_mask(
    packed: PackedRows,
    rule: dict[str, torch.Tensor],
    gather: torch.Tensor,
    valid: torch.Tensor,
    dtype: torch.dtype,
) -> torch.Tensor:
    """The additive masks ``[n, 1, L_b, L_b]`` of a bucket (each slot row one sample): its own rule in its
    own coordinates; a padding slot sees only itself."""
    column = packed.source.flatten()[gather]
    block, prefix = (rule[k].flatten()[gather] for k in ("block", "prefix"))
    ok = _allowed_in_sample(
        column[:, :, None], column[:, None, :], block[:, :, None], block[:, None, :], prefix[:, :, None]
    )
    eye = torch.eye(gather.shape[1], dtype=torch.bool, device=gather.device)
    ok = (ok & valid[:, :, None] & valid[:, None, :]) | eye
    mask = torch.zeros(ok.shape, dtype=dtype, device=gather.device).masked_fill_(~ok, torch.finfo(dtype).min)
    return mask.unsqueeze(1)


def segment_attention(
    packed: PackedRows,
    unpacked_ids: torch.Tensor,
    rules: Sequence[str],
    vocab: UnifiedVocab,
    dtype: torch.dtype = torch.float32,
) -> SegmentAttention:
    """Per-sample attention of packed rows for sdpa models (the varlen way, without a flash-varlen kernel).

    The packed rows' dense mask costs ``T^2`` per row and most of it is across samples, which no dense
    kernel skips. Instead each sample attends on its own: samples of similar length form a bucket
    ``[n, L_b]`` (gathered from the flattened packed positions), run as one SDPA call under the samples' own
    omni masks, so attention costs about the sum of the samples' squared lengths in a few calls per layer.
    Samples whose rule is plain causal (text-only rows) form their own buckets and run SDPA's causal kernel,
    which skips the upper triangle; their padding slots come last, after every key a token may see.
    """
    device = packed.ids.device
    rule = _packed_rule(packed, unpacked_ids, rules, vocab)
    causal = rule["causal"].tolist()
    width = packed.ids.shape[1]
    placed = [(s, r * width + start, n) for r, segs in enumerate(packed.segments) for s, start, n in segs]
    groups = [[i for i, p in enumerate(placed) if causal[p[0]] == flag] for flag in (False, True)]
    buckets, gathers = [], []
    scatter = torch.zeros(packed.ids.numel(), dtype=torch.long)
    slots = 0
    for flag, group in zip((False, True), groups):
        for members in length_buckets([placed[i][2] for i in group]):
            members = [group[m] for m in members]
            size = placed[members[0]][2]
            gather = torch.empty(len(members), size, dtype=torch.long)
            valid = torch.zeros(len(members), size, dtype=torch.bool)
            for j, m in enumerate(members):
                _, first, n = placed[m]
                gather[j] = first  # a padding slot reads its sample's first token (masked, output dropped)
                gather[j, :n] = torch.arange(first, first + n)
                valid[j, :n] = True
                scatter[first : first + n] = torch.arange(slots + j * size, slots + j * size + n)
            slots += gather.numel()
            gather, valid = gather.to(device), valid.to(device)
            mask = None
            if not flag:
                mask = _bucket_mask(packed, rule, gather, valid, dtype)
            buckets.append((len(members), size, mask))
            gathers.append(gather.flatten())
    scatter.masked_fill_(packed.sample.flatten().cpu() < 0, slots)
    return SegmentAttention(torch.cat(gathers), buckets, scatter.to(device))


def packed_block_mask(
    packed: PackedRows,
    unpacked_ids: torch.Tensor,
    rules: Sequence[str],
    vocab: UnifiedVocab,
    compiled: bool = False,
) -> Any:
    """The same rule as a FlexAttention ``BlockMask`` (blocks across samples or of padding are skipped);
    ``compiled`` builds it through ``torch.compile``."""
    from torch.nn.attention.flex_attention import create_block_mask

    rule = _packed_rule(packed, unpacked_ids, rules, vocab)
    sample, source, block, prefix = packed.sample, packed.source, rule["block"], rule["prefix"]

    def mask_mod(r: torch.Tensor, h: torch.Tensor, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        # each operand is one lookup in an [R, T] table (no index through another index)
        sq = sample[r, q]
        ok = _allowed_in_sample(source[r, q], source[r, k], block[r, q], block[r, k], prefix[r, q])
        return (ok & (sq == sample[r, k]) & (sq >= 0)) | ((sq < 0) & (q == k))

    build = torch.compile(create_block_mask) if compiled else create_block_mask
    rows, width = packed.ids.shape
    return build(mask_mod, B=rows, H=None, Q_LEN=width, KV_LEN=width, device=packed.ids.device)


def unpack(hidden: torch.Tensor, packed: PackedRows) -> torch.Tensor:
    """Packed hidden states ``[R, T, H]`` back in the padded layout ``[N, L, H]`` (zeros at the pads)."""
    out = hidden.new_zeros(*packed.unpacked_shape, hidden.shape[-1])
    where = packed.sample >= 0
    out[packed.sample[where], packed.source[where]] = hidden[where]
    return out


def packed_hidden_states(
    model: Any,
    parts: Sequence[tuple[str, torch.Tensor]],
    budget: int,
    image_embeds: torch.Tensor | None = None,
) -> list[torch.Tensor]:
    """``model.hidden_states`` of rows given as (attention rule, ids ``[B, L_i]``), computed packed.

    Rows of every length (mixed rows are longer) go into one pool; each part's hidden states come back in
    its padded layout ``[B, L_i, H]``, zeros at the pads (which carry no target); also returns how many
    positions the transformer ran (the packed rows' size, for throughput telemetry). ``image_embeds``
    ``[K, H]`` (a latent objective's) belong to the parts' image positions in row order and travel with them.
    """
    pad = model.vocab.pad_id
    width = max(ids.shape[1] for _, ids in parts)
    ids = torch.cat([torch.nn.functional.pad(p, (0, width - p.shape[1]), value=pad) for _, p in parts])
    rules = [rule for rule, p in parts for _ in range(len(p))]
    packed = pack(ids, pad, budget)
    mask, segments = None, None
    if model.uses_flex:
        mask = packed_block_mask(packed, ids, rules, model.vocab)
    elif model.attention == "sdpa":
        segments = segment_attention(packed, ids, rules, model.vocab)
    else:
        mask = packed_attention_mask(packed, ids, rules, model.vocab)
    embeds = None
    if image_embeds is not None:  # laid out like the padded rows, then packed like the ids
        where = model.vocab.is_image(ids) | (ids == model.vocab.mask_id)
        padded = image_embeds.new_zeros(*ids.shape, image_embeds.shape[-1])
        padded[where] = image_embeds
        embeds = padded[packed.sample.clamp(min=0), packed.source]
    hidden = model.hidden_states(
        packed.ids, mask, embeds, position_ids=packed.position_ids, segments=segments
    )
    hidden = unpack(hidden, packed)
    out = [h[:, : p.shape[1]] for h, (_, p) in zip(hidden.split([len(p) for _, p in parts]), parts)]
    return out, packed.ids.numel()
