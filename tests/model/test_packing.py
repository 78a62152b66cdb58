"""Sequence packing: a packed sample's hidden states and gradients equal its unpacked ones (dense mask,
flex mask and sdpa segments), and the packer keeps every token once within its budget."""

from __future__ import annotations

import warnings

import pytest
import torch

from showo.attention import batch_attention_mask, sdpa_kernel
from showo.errors import ShowoError
from showo.packing import (
    first_fit_decreasing,
    length_buckets,
    pack,
    packed_attention_mask,
    packed_block_mask,
    packed_hidden_states,
    segment_attention,
    unpack,
)
from tests.fixtures.model import TINY_MAX_TEXT_LEN

CAPTIONS = ["a red circle", "two blue squares left of a green star", ""]
# the rows also run under other tasks' rules, so every rule meets every row layout
RELABELS = [{}, {"t2i": "causal", "mmu": "mixed"}, {"t2i": "mixed", "lm": "causal", "mmu": "t2i"}]


def mixed_batch(model):
    """[t2i | lm | mmu] rows of one length, as the training step concatenates them, with their rules."""
    vocab, pr = model.vocab, model.prompter()
    gen = torch.Generator().manual_seed(4)
    images = vocab.codes_to_ids(
        torch.randint(0, vocab.codebook_size, (3, pr.num_image_tokens), generator=gen)
    )
    parts = [
        ("t2i", pr.t2i(CAPTIONS, images, images)[0]),
        ("lm", pr.lm(["def f(x): return x", "import os"])[0]),
        (
            "mmu",
            pr.mmu(images[:2], ["USER: \nDescribe. ASSISTANT: a red circle", "USER: \nHi ASSISTANT: no"])[0],
        ),
    ]
    ids = torch.cat([p for _, p in parts])
    rules = [task for task, p in parts for _ in range(len(p))]
    return parts, ids, rules


def test_packed_hidden_states_equal_the_unpacked_ones(tiny_showo):
    parts, ids, rules = mixed_batch(tiny_showo)
    vocab = tiny_showo.vocab
    decoder = tiny_showo.llm.get_decoder().eval()
    packed = pack(ids, vocab.pad_id, budget=ids.shape[1])
    assert packed.ids.shape[0] < ids.shape[0] and packed.tokens == int((ids != vocab.pad_id).sum())
    with torch.no_grad():
        dense = decoder(input_ids=ids, attention_mask=batch_attention_mask(parts, vocab)).last_hidden_state
        mask = packed_attention_mask(packed, ids, rules, vocab)
        out = decoder(input_ids=packed.ids, attention_mask=mask, position_ids=packed.position_ids)
    got = unpack(out.last_hidden_state, packed)
    real = ids != vocab.pad_id
    assert torch.allclose(got[real], dense[real], atol=1e-5)
    assert (got[~real] == 0).all()


@pytest.mark.parametrize("relabel", RELABELS)
def test_packed_block_mask_equals_the_dense_packed_mask(tiny_showo, relabel):
    """Every rule, against the unpacked masks laid out block-diagonally."""
    from torch.nn.attention.flex_attention import flex_attention

    _, ids, rules = mixed_batch(tiny_showo)
    rules = [relabel.get(r, r) for r in rules]
    packed = pack(ids, tiny_showo.vocab.pad_id, budget=ids.shape[1] + 40)
    rows, width = packed.ids.shape
    gen = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(rows, 2, width, 8, generator=gen) for _ in range(3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = flex_attention(q, k, v, block_mask=packed_block_mask(packed, ids, rules, tiny_showo.vocab))
    ref = torch.nn.functional.scaled_dot_product_attention(
        q, k, v, attn_mask=packed_attention_mask(packed, ids, rules, tiny_showo.vocab)
    )
    assert torch.allclose(got, ref, atol=1e-5)


def test_first_fit_decreasing_places_every_sample_once_within_the_budget():
    lengths = [7, 3, 9, 1, 5, 5, 2]
    rows = first_fit_decreasing(lengths, 10)
    assert sorted(i for row in rows for i in row) == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in row) <= 10 for row in rows)
    assert len(rows) == 4  # 32 tokens need at least 4 rows of 10
    with pytest.raises(ShowoError, match="does not fit"):
        first_fit_decreasing([11], 10)


def test_positions_restart_per_sample_and_tokens_come_from_their_source(tiny_showo):
    _, ids, _ = mixed_batch(tiny_showo)
    packed = pack(ids, tiny_showo.vocab.pad_id, budget=2 * TINY_MAX_TEXT_LEN + ids.shape[1])
    for r in range(packed.ids.shape[0]):
        for s in packed.sample[r].unique().tolist():
            if s < 0:
                continue
            cols = packed.sample[r] == s
            assert packed.position_ids[r, cols].tolist() == list(range(int(cols.sum())))
            assert torch.equal(packed.ids[r, cols], ids[s][ids[s] != tiny_showo.vocab.pad_id])


@pytest.mark.parametrize("relabel", RELABELS)
@pytest.mark.parametrize("extra", [0, 40, 1000])
def test_segment_attention_equals_the_dense_packed_mask(tiny_showo, extra, relabel):
    """Per-sample buckets give what one block-diagonal mask gives, at every sample's position and under
    every rule, whether the rows end in padding (a budget a little over L) or hold the whole batch in one
    row."""
    _, ids, rules = mixed_batch(tiny_showo)
    rules = [relabel.get(r, r) for r in rules]
    vocab = tiny_showo.vocab
    packed = pack(ids, vocab.pad_id, budget=ids.shape[1] + extra)
    rows, width = packed.ids.shape
    gen = torch.Generator().manual_seed(2)
    q, k, v = (torch.randn(rows, 2, width, 8, generator=gen) for _ in range(3))
    module = torch.nn.Module().eval()
    got, _ = sdpa_kernel(module, q, k, v, None, segments=segment_attention(packed, ids, rules, vocab))
    ref = torch.nn.functional.scaled_dot_product_attention(
        q, k, v, attn_mask=packed_attention_mask(packed, ids, rules, vocab)
    ).transpose(1, 2)
    real = packed.sample >= 0
    assert torch.allclose(got[real], ref[real], atol=1e-6)
    assert (got[~real] == 0).all()


def test_segment_attention_runs_in_bfloat16_with_float32_masks(tiny_showo):
    """Under bf16 autocast the queries are bf16 while the masks were built in float32 (as training builds
    them): the kernel casts each mask, and its -inf-rounded blocked entries leave no row empty."""
    _, ids, rules = mixed_batch(tiny_showo)
    vocab = tiny_showo.vocab
    packed = pack(ids, vocab.pad_id, budget=ids.shape[1] + 40)
    rows, width = packed.ids.shape
    gen = torch.Generator().manual_seed(5)
    q, k, v = (torch.randn(rows, 2, width, 8, generator=gen) for _ in range(3))
    segments = segment_attention(packed, ids, rules, vocab)
    module = torch.nn.Module().eval()
    full, _ = sdpa_kernel(module, q, k, v, None, segments=segments)
    half, _ = sdpa_kernel(module, *(t.bfloat16() for t in (q, k, v)), None, segments=segments)
    real = packed.sample >= 0
    assert half.dtype == torch.bfloat16 and torch.isfinite(half).all()
    assert torch.allclose(half[real].float(), full[real], atol=3e-2)


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_packed_hidden_states_and_gradients_equal_the_padded_ones(tiny_llm_dir, attn):
    """The training path (``packed_hidden_states``): sdpa runs segments, eager the dense packed mask."""
    from showo.model import ShowO

    torch.manual_seed(0)
    model = ShowO.build(tiny_llm_dir, None, 64, 16, TINY_MAX_TEXT_LEN, attn_implementation=attn)
    parts, ids, _ = mixed_batch(model)
    real = ids != model.vocab.pad_id
    weights = torch.randn(
        *ids.shape, model.llm.config.hidden_size, generator=torch.Generator().manual_seed(3)
    )

    def run(packed: bool) -> tuple[torch.Tensor, list[torch.Tensor]]:
        model.zero_grad(set_to_none=True)
        if packed:
            hidden = torch.cat(packed_hidden_states(model, parts, ids.shape[1] + 40)[0])
        else:
            hidden = model.hidden_states(ids, batch_attention_mask(parts, model.vocab))
        (hidden[real] * weights[real]).sum().backward()
        return hidden[real].detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]

    (padded, padded_grads), (packed, packed_grads) = run(False), run(True)
    assert torch.allclose(packed, padded, atol=1e-5)
    assert len(packed_grads) == len(padded_grads)
    assert all(
        torch.allclose(a, b, atol=1e-6 * b.abs().max().item()) for a, b in zip(packed_grads, padded_grads)
    )


def test_length_buckets_keep_every_sample_once_within_the_slack():
    lengths = [387, 280, 290, 100, 387, 95, 60, 281, 1]
    buckets = length_buckets(lengths, slack=0.125)
    assert sorted(i for b in buckets for i in b) == list(range(len(lengths)))
    for b in buckets:
        longest = max(lengths[i] for i in b)
        assert lengths[b[0]] == longest and all(lengths[i] >= 0.875 * longest for i in b)
    assert [[lengths[i] for i in b] for b in buckets] == [[387, 387], [290, 281, 280], [100, 95], [60], [1]]
