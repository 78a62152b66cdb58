"""Losses: MTP slice with identity SOI/EOI targets, shifted NTP, coefficients, empty tasks.

The official rules: docs/official-differences.md#losses.
"""

import pytest
import torch
import torch.nn.functional as F

from showo import objectives
from showo.errors import ShowoError
from showo.losses import gather_labelled, labelled_loss, showo_loss
from showo.masking import mask_image_tokens
from showo.prompting import Prompter
from showo.vocab import UnifiedVocab

M, N = 6, 4


@pytest.fixture
def batch(phi_layout_tokenizer):
    vocab = UnifiedVocab.extend_tokenizer(phi_layout_tokenizer, 64)
    pr = Prompter(phi_layout_tokenizer, vocab, max_text_len=M, num_image_tokens=N)
    gen = torch.Generator().manual_seed(0)
    img = vocab.codes_to_ids(torch.randint(0, 64, (3, N), generator=gen))
    masked, img_labels = mask_image_tokens(img, vocab.mask_id, "cosine", gen)
    t2i = pr.t2i(["7 8", "9", ""], masked, img_labels)
    lm = pr.lm(["1 2 3", "4 5"])
    mmu = pr.mmu(img[:2], ["6", "7 8 9"])
    logits = torch.randn(7, M + N + 3, vocab.size, generator=gen, requires_grad=True)
    return vocab, pr, img_labels, t2i, lm, mmu, logits


def official(logits, labels, bs_t2i, bs_lm, bs_mmu):
    """The official slices with an explicit mean, written independently of showo.losses."""
    v = logits.shape[-1]
    t2i = F.cross_entropy(logits[:bs_t2i, M + 1 :].reshape(-1, v), labels[:bs_t2i, M + 1 :].reshape(-1))
    lm_rows = slice(bs_t2i, bs_t2i + bs_lm)
    lm = F.cross_entropy(logits[lm_rows, :-1].reshape(-1, v), labels[lm_rows, 1:].reshape(-1))
    mmu = F.cross_entropy(logits[-bs_mmu:, :-1].reshape(-1, v), labels[-bs_mmu:, 1:].reshape(-1))
    return t2i, lm, mmu


def test_matches_official_slices_and_coefficients(batch):
    vocab, _, img_labels, t2i, lm, mmu, logits = batch
    labels = torch.cat([t2i[1], lm[1], mmu[1]])
    out = showo_loss(
        logits, labels, {"t2i": 3, "lm": 2, "mmu": 2}, {"t2i": 1.0, "lm": 0.1, "mmu": 1.0}, max_text_len=M
    )
    ref_t2i, ref_lm, ref_mmu = official(logits, labels, 3, 2, 2)
    assert torch.allclose(out["loss_t2i"], ref_t2i) and torch.allclose(out["loss_lm"], ref_lm)
    assert torch.allclose(out["loss_mmu"], ref_mmu)
    assert torch.allclose(out["loss"], ref_t2i + 0.1 * ref_lm + ref_mmu)
    # MTP denominator: #masked + 2 (SOI, EOI identity targets) per row.
    assert out["tokens_t2i"].item() == int((img_labels != -100).sum()) + 2 * 3
    # lm: targets after the shift, EOS included, BOS never; mmu: BOS (from EOI) through EOS.
    assert out["tokens_lm"].item() == (3 + 1) + (2 + 1)
    assert out["tokens_mmu"].item() == (1 + 1 + 1) + (3 + 1 + 1)
    out["loss"].backward()
    assert logits.grad is not None and logits.grad[:, :M].abs().sum() > 0


def test_per_task_dicts_equal_concatenated(batch):
    _, _, _, t2i, lm, mmu, logits = batch
    labels = torch.cat([t2i[1], lm[1], mmu[1]])
    cat = showo_loss(logits, labels, {"t2i": 3, "lm": 2, "mmu": 2}, {"lm": 0.5}, max_text_len=M)
    per = showo_loss(
        {"t2i": logits[:3], "lm": logits[3:5], "mmu": logits[5:]},
        {"t2i": t2i[1], "lm": lm[1], "mmu": mmu[1]},
        None,
        {"lm": 0.5},
        max_text_len=M,
    )
    for k in cat:
        assert torch.allclose(cat[k].float(), per[k].float())


def test_empty_task_contributes_nothing(batch):
    """The official logits[-0:] picks the whole batch when bs_mmu = 0; here an empty task is skipped."""
    _, _, _, t2i, lm, _, logits = batch
    labels = torch.cat([t2i[1], lm[1]])
    lg = logits[:5]
    out = showo_loss(lg, labels, {"t2i": 3, "lm": 2, "mmu": 0}, {"mmu": 1.0, "lm": 0.1}, max_text_len=M)
    assert "loss_mmu" not in out and "tokens_mmu" not in out
    ref_t2i, ref_lm, _ = official(lg, labels, 3, 2, 1)
    assert torch.allclose(out["loss"], ref_t2i + 0.1 * ref_lm)
    only_empty = showo_loss(lg[:0], labels[:0], {"t2i": 0}, max_text_len=M)
    assert only_empty["loss"].item() == 0.0 and only_empty["loss"].requires_grad


def test_ar_objective(batch):
    vocab, pr, _, _, _, _, logits = batch
    img = vocab.codes_to_ids(torch.randint(0, 64, (3, N), generator=torch.Generator().manual_seed(1)))
    ids, labels = objectives.get("ar").t2i_rows(pr, ["7", "8", "9"], img)
    assert torch.equal(ids[:, M + 2 : -1], img)  # unmasked
    out = showo_loss(logits[:3], labels, {"t2i": 3}, max_text_len=M, image_objective="ar")
    # Next-token over the image block: SOI predicts img_1, ..., img_N predicts EOI.
    v = logits.shape[-1]
    ref = F.cross_entropy(
        logits[:3, M + 1 : -1].reshape(-1, v),
        torch.cat([img, torch.full((3, 1), vocab.eoi_id)], 1).reshape(-1),
    )
    assert torch.allclose(out["loss_t2i"], ref) and out["tokens_t2i"].item() == 3 * (N + 1)
    ar, mtp = objectives.get("ar"), objectives.get("mtp")
    assert ar.attention("t2i") == "causal" and ar.attention("mmu") == "mmu"
    assert mtp.attention("t2i") == "t2i"
    mids, mlabels = mtp.t2i_rows(pr, ["7", "8", "9"], img, generator=torch.Generator().manual_seed(2))
    assert bool((mids[:, M + 2 : -1] == vocab.mask_id).any(-1).all())


def test_mixed_aligned_labels(phi_layout_tokenizer):
    vocab = UnifiedVocab.extend_tokenizer(phi_layout_tokenizer, 64)
    pr = Prompter(phi_layout_tokenizer, vocab, max_text_len=6, num_image_tokens=2, max_frames=2)
    frames = [
        torch.tensor([[vocab.mask_id, vocab.image_offset + 1], [vocab.image_offset + 2, vocab.mask_id]])
    ]
    labels = [torch.tensor([[vocab.image_offset + 5, -100], [-100, vocab.image_offset + 6]])]
    ids, lab = pr.mixed(frames, [["1", "2"]], labels)
    logits = torch.randn(1, ids.shape[1], vocab.size, generator=torch.Generator().manual_seed(3))
    out = showo_loss({"mixed": logits}, {"mixed": lab}, None)
    valid = lab[0] != -100
    assert torch.allclose(out["loss_mixed"], F.cross_entropy(logits[0][valid], lab[0][valid]))
    # next-token targets "1", soi, "2", soi, eos (bos is never one) + the two MTP image labels
    assert out["tokens_mixed"].item() == 5 + 2


def test_errors(batch):
    _, _, _, t2i, _, _, logits = batch
    with pytest.raises(ShowoError):
        showo_loss(logits[:3], t2i[1], {"t2i": 3})  # needs M
    with pytest.raises(ShowoError):
        showo_loss(logits[:3], t2i[1], {"t2i": 2}, max_text_len=M)
    with pytest.raises(ShowoError):
        showo_loss(logits[:3], t2i[1], {"x2y": 3}, max_text_len=M)


def test_head_at_labelled_positions_equals_the_dense_loss(batch):
    """Training's path (head applied only where a target is) against the loss over full logits."""
    _, _, _, t2i, lm, mmu, logits = batch
    hidden = torch.randn(
        7, logits.shape[1], 16, generator=torch.Generator().manual_seed(4), requires_grad=True
    )
    head = torch.nn.Linear(16, logits.shape[-1])
    labels = {"t2i": t2i[1], "lm": lm[1], "mmu": mmu[1]}
    states = dict(zip(labels, hidden.split([3, 2, 2])))
    coeffs = {"lm": 0.1}
    dense = showo_loss({t: head(s) for t, s in states.items()}, labels, None, coeffs, max_text_len=M)
    picked = gather_labelled(states, labels, None, head, max_text_len=M)
    sparse = labelled_loss(picked, coeffs)
    assert picked.logits.shape[0] == sum(int(dense[f"tokens_{t}"]) for t in labels) < hidden.shape[:2].numel()
    for key in dense:
        assert torch.allclose(dense[key].float(), sparse[key].float(), atol=1e-6), key
    (grad_dense,) = torch.autograd.grad(dense["loss"], hidden)
    (grad_sparse,) = torch.autograd.grad(sparse["loss"], hidden)
    assert torch.allclose(grad_dense, grad_sparse, atol=1e-7)
    targets = picked.by_task()["t2i"][1]
    assert torch.equal(targets, t2i[1][:, M + 1 :][t2i[1][:, M + 1 :] != -100])
