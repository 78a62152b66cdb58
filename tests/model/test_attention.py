"""Omni-attention masks against hand-written matrices (a left-padded t2i row) and naive per-position rules.

The naive references follow the official step lists (docs/official-differences.md#attention) literally (Python
loops), and the prose rule for the mixed / ar masks.
"""

import pytest
import torch

from showo.attention import omni_attention_mask
from showo.errors import ShowoError
from showo.prompting import Prompter
from showo.vocab import UnifiedVocab


@pytest.fixture
def setup(phi_layout_tokenizer):
    vocab = UnifiedVocab.extend_tokenizer(phi_layout_tokenizer, 8192)
    return vocab, Prompter(phi_layout_tokenizer, vocab, max_text_len=6, num_image_tokens=4)


def allowed(mask):
    """Additive mask -> 0/1 allowed matrix, checking the values are exactly 0 or finfo.min."""
    lo = torch.finfo(mask.dtype).min
    assert bool(((mask == 0) | (mask == lo)).all())
    return (mask == 0).long()


def grid(text):
    return torch.tensor([[int(c) for c in row] for row in text.split()])


def test_t2i_hand_written(setup):
    vocab, pr = setup
    ids = pr.t2i_gen(["7 8"], torch.full((1, 4), vocab.mask_id))
    expected = grid(
        """
        1000000000000
        1100000000000
        0010000000000
        0011000000000
        0011100000000
        0011110000000
        0011111000000
        0011111111111
        0011111111111
        0011111111111
        0011111111111
        0011111111111
        0011111111111
        """
    )
    m = omni_attention_mask(ids, vocab, "t2i")
    assert m.shape == (1, 1, 13, 13) and m.dtype == torch.float32
    assert torch.equal(allowed(m)[0, 0], expected)


def test_mmu_hand_written(setup):
    vocab, pr = setup
    ids, _ = pr.mmu(torch.full((1, 4), vocab.image_offset), ["7 8"])
    expected = grid(
        """
        1111111000000
        1111111000000
        1111111000000
        1111111000000
        1111111000000
        1111111000000
        1111111000000
        1111111100000
        1111111110000
        1111111111000
        1111111111100
        1111111111110
        1111111111111
        """
    )
    assert torch.equal(allowed(omni_attention_mask(ids, vocab, "mmu"))[0, 0], expected)


def official_predict_next(seq, vocab, rm_pad_in_image):
    """The official t2i/lm steps 1-6 (docs/official-differences.md#attention), one row at a time."""
    out = []
    for row in seq.tolist():
        n = len(row)
        n_soi = n_eoi = 0
        in_image = []
        for x in row:
            n_soi += x == vocab.soi_id
            n_eoi += x == vocab.eoi_id
            in_image.append(n_soi > n_eoi or x in (vocab.soi_id, vocab.eoi_id))
        text = [[int(not in_image[i] and j <= i) for j in range(n)] for i in range(n)]
        bi = [[1] * n for _ in range(n)]
        if rm_pad_in_image:
            pads = [j for j, x in enumerate(row) if x == vocab.pad_id]
            if pads:
                last = pads[-1]
                for i in range(last + 1, n):
                    for j in range(last + 1):
                        text[i][j] = 0
                soi_pos = row.index(vocab.soi_id)
                for i in range(soi_pos, n):
                    for j in pads:
                        bi[i][j] = 0
        out.append([bi[i] if in_image[i] else text[i] for i in range(n)])
    return torch.tensor(out)


def official_mmu(seq, vocab):
    """The official mmu mask: causal, plus columns 0..EOI of the FIRST row visible to every row."""
    n = seq.shape[1]
    eoi = seq[0].tolist().index(vocab.eoi_id)
    return torch.tensor([[[int(j <= i or j <= eoi) for j in range(n)] for i in range(n)] for _ in seq])


def naive_block_rule(seq, vocab, bidirectional_images):
    """Causal, plus each [soi..eoi] block bidirectional (if asked); non-pad queries never see pads."""
    out = []
    for row in seq.tolist():
        n = len(row)
        block, current, open_ = [], 0, False
        for x in row:
            if x == vocab.soi_id:
                current, open_ = current + 1, True
            block.append(current if open_ else 0)
            if x == vocab.eoi_id:
                open_ = False
        pad = [x == vocab.pad_id for x in row]
        m = [
            [
                int(
                    (j <= i or (bidirectional_images and block[i] > 0 and block[i] == block[j]))
                    and (pad[i] or not pad[j])
                )
                for j in range(n)
            ]
            for i in range(n)
        ]
        out.append(m)
    return torch.tensor(out)


def random_images(vocab, b, n, gen):
    codes = torch.randint(0, vocab.codebook_size, (b, n), generator=gen)
    masked = torch.rand(b, n, generator=gen) < 0.5
    return torch.where(masked, vocab.mask_id, vocab.codes_to_ids(codes))


def test_against_official_rules(phi_layout_tokenizer):
    vocab = UnifiedVocab.extend_tokenizer(phi_layout_tokenizer, 8192)
    pr = Prompter(phi_layout_tokenizer, vocab, max_text_len=10, num_image_tokens=6)
    gen = torch.Generator().manual_seed(0)
    texts = ["", "5", "1 2 3", "1 2 3 4 5 6 7 8", " ".join(map(str, range(1, 30)))]
    img = random_images(vocab, len(texts), 6, gen)
    t2i = pr.t2i_gen(texts, img)
    assert torch.equal(
        allowed(omni_attention_mask(t2i, vocab, "t2i"))[:, 0], official_predict_next(t2i, vocab, True)
    )
    lm, _ = pr.lm(texts)
    assert torch.equal(
        allowed(omni_attention_mask(lm, vocab, "lm"))[:, 0], official_predict_next(lm, vocab, False)
    )
    mmu, _ = pr.mmu(img, texts)
    assert torch.equal(allowed(omni_attention_mask(mmu, vocab, "mmu"))[:, 0], official_mmu(mmu, vocab))
    conv = [[{"from": "human", "value": t}, {"from": "gpt", "value": "9"}] for t in texts]
    ins, _ = pr.instruct(img, conv)
    assert torch.equal(allowed(omni_attention_mask(ins, vocab, "instruct"))[:, 0], official_mmu(ins, vocab))
    # The AR objective: plain causal, pads hidden; t2i under the block rule is the official mask too.
    assert torch.equal(
        allowed(omni_attention_mask(t2i, vocab, "causal"))[:, 0], naive_block_rule(t2i, vocab, False)
    )
    assert torch.equal(
        allowed(omni_attention_mask(t2i, vocab, "mixed"))[:, 0], naive_block_rule(t2i, vocab, True)
    )


def test_mixed_and_left_padded_decoding(phi_layout_tokenizer):
    vocab = UnifiedVocab.extend_tokenizer(phi_layout_tokenizer, 8192)
    pr = Prompter(phi_layout_tokenizer, vocab, max_text_len=8, num_image_tokens=3, max_frames=3)
    gen = torch.Generator().manual_seed(1)
    frames = [random_images(vocab, f, 3, gen) for f in (3, 1, 2)]
    caps = [["1 2", "3", "4 5 6"], ["7"], ["", "8"]]
    ids, _ = pr.mixed(frames, caps)
    m = allowed(omni_attention_mask(ids, vocab, "mixed"))[:, 0]
    assert torch.equal(m, naive_block_rule(ids, vocab, True))
    # A later caption sees earlier frames; an earlier frame does not see later text.
    first_eoi = ids[0].tolist().index(vocab.eoi_id)
    assert m[0, first_eoi + 1, 3] == 1 and m[0, 3, first_eoi + 1] == 0
    # Left-padded understanding prompts: the real rows never see pads, the prefix stays bidirectional.
    gen_ids = pr.mmu_gen(random_images(vocab, 2, 3, gen), ["5", "1 2 3 4 5"])
    g = allowed(omni_attention_mask(gen_ids, vocab, "mmu_gen"))[:, 0]
    for b, row in enumerate(gen_ids.tolist()):
        pads = [j for j, x in enumerate(row) if x == vocab.pad_id]
        start, eoi = row.index(vocab.mmu_id), row.index(vocab.eoi_id)
        for i in range(start, len(row)):
            assert all(g[b, i, j] == 0 for j in pads)
            assert all(g[b, i, j] == 1 for j in range(start, max(i, eoi) + 1))
            assert all(g[b, i, j] == 0 for j in range(max(i, eoi) + 1, len(row)))


@pytest.mark.parametrize("task", ["t2i", "lm", "mmu", "mixed", "causal"])
def test_no_row_fully_masked(setup, task):
    vocab, pr = setup
    gen = torch.Generator().manual_seed(2)
    ids = torch.randint(0, vocab.size, (6, 13), generator=gen)
    ids[:, :4] = vocab.pad_id  # many pads, stray delimiters
    ids[1] = vocab.pad_id
    m = omni_attention_mask(ids, vocab, task, dtype=torch.bfloat16)
    assert m.dtype == torch.bfloat16
    assert bool((m == 0).any(-1).all())
    assert bool((torch.diagonal(m[:, 0], dim1=-2, dim2=-1) == 0).all())


def test_bad_task(setup):
    vocab, _ = setup
    with pytest.raises(ShowoError):
        omni_attention_mask(torch.zeros(1, 3, dtype=torch.long), vocab, "nope")


def test_flex_block_mask_matches_dense(phi_layout_tokenizer):
    """The FlexAttention BlockMask (same rule) gives SDPA-with-dense-mask outputs; L = 163 spans two blocks."""
    import warnings

    from torch.nn.attention.flex_attention import flex_attention

    from showo.attention import omni_block_mask

    vocab = UnifiedVocab.extend_tokenizer(phi_layout_tokenizer, 8192)
    pr = Prompter(phi_layout_tokenizer, vocab, max_text_len=16, num_image_tokens=144)
    gen = torch.Generator().manual_seed(5)
    img = random_images(vocab, 2, 144, gen)
    cases = {
        "t2i": pr.t2i_gen(["1 2 3", ""], img),
        "mmu": pr.mmu(img, ["4 5", "6"])[0],
        "mixed": pr.mixed([img[:1], img[1:]], [["1 2"], ["3"]])[0],
        "causal": pr.lm(["1 2 3", "4"])[0],
    }
    q, k, v = (torch.randn(2, 2, 163, 8, generator=gen) for _ in range(3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for task, ids in cases.items():
            got = flex_attention(q, k, v, block_mask=omni_block_mask(ids, vocab, task))
            ref = torch.nn.functional.scaled_dot_product_attention(
                q, k, v, attn_mask=omni_attention_mask(ids, vocab, task)
            )
            assert torch.allclose(got, ref, atol=1e-5), task


def test_batch_block_mask_matches_the_dense_batch_mask(phi_layout_tokenizer):
    """A concatenated [t2i | lm | mmu] batch: one BlockMask, each row under its own rule, equals SDPA with
    ``batch_attention_mask``."""
    import warnings

    from torch.nn.attention.flex_attention import flex_attention

    from showo.attention import batch_attention_mask, batch_block_mask

    vocab = UnifiedVocab.extend_tokenizer(phi_layout_tokenizer, 8192)
    pr = Prompter(phi_layout_tokenizer, vocab, max_text_len=16, num_image_tokens=144)
    gen = torch.Generator().manual_seed(6)
    img = random_images(vocab, 2, 144, gen)
    parts = [
        ("t2i", pr.t2i_gen(["1 2 3", ""], img)),
        ("lm", pr.lm(["1 2 3 4 5"])[0]),
        ("mmu", pr.mmu(img, ["4 5", "6"])[0]),
    ]
    q, k, v = (torch.randn(5, 2, 163, 8, generator=gen) for _ in range(3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = flex_attention(q, k, v, block_mask=batch_block_mask(parts, vocab))
    ref = torch.nn.functional.scaled_dot_product_attention(
        q, k, v, attn_mask=batch_attention_mask(parts, vocab)
    )
    assert torch.allclose(got, ref, atol=1e-5)


@pytest.mark.parametrize("options", [None, {"BLOCK_M": 128, "num_stages": 3}])
def test_a_flex_kernel_too_big_for_the_gpu_is_one_line_naming_the_setting(monkeypatch, options):
    """The compile failure an H200 gave for packed flex rows (message recorded in bench/gpu_results.json)
    becomes a ShowoError naming `model.flex_kernel_options`; other failures pass through unchanged. Tensors
    on the meta device take the accelerator branch without a GPU."""
    import transformers.integrations.flex_attention as hf_flex

    from showo.attention import flex_attention_kernel

    def too_big(*args, **kwargs):
        raise RuntimeError(
            "No valid triton configs. OutOfMemoryError: out of resource: triton_tem_fused_flex_attention_1 "
            "Required: 382976 Hardware limit:232448 Reducing block sizes or `num_stages` may help."
        )

    module = torch.nn.Module()
    module.flex_kernel_options = options
    q = torch.empty(1, 2, 8, 4, device="meta")
    monkeypatch.setattr(hf_flex, "flex_attention_forward", too_big)
    with pytest.raises(ShowoError, match="model.flex_kernel_options") as err:
        flex_attention_kernel(module, q, q, q, None)
    assert "\n" not in str(err.value) and str(options or "torch default settings") in str(err.value)

    def other(*args, **kwargs):
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    monkeypatch.setattr(hf_flex, "flex_attention_forward", other)
    with pytest.raises(RuntimeError, match="illegal memory access"):
        flex_attention_kernel(module, q, q, q, None)
