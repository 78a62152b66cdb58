"""The module's device-side masking: only image tokens, exactly the official per-image rule, reproducible."""

from __future__ import annotations

import copy

import torch

from showo.attention import omni_attention_mask
from showo.losses import showo_loss
from showo.recipe import load_recipe
from showo.training.module import ShowoModule
from tests.fixtures.model import TINY_MAX_TEXT_LEN
from tests.training.conftest import N_TOKENS, recipe_dict, write_recipe

M = TINY_MAX_TEXT_LEN


def test_masking_touches_only_image_tokens_and_is_seeded_by_the_batch_index(
    tmp_path, tiny_showo, tiny_llm_dir, image_tokenizer_dir, shards
):
    recipe = load_recipe(
        write_recipe(tmp_path / "r.yaml", recipe_dict(tmp_path, tiny_llm_dir, image_tokenizer_dir, shards))
    )
    module = ShowoModule(copy.deepcopy(tiny_showo), recipe)
    vocab, prompter = tiny_showo.vocab, tiny_showo.prompter(max_frames=2)
    images = vocab.codes_to_ids(torch.randint(0, vocab.codebook_size, (3, N_TOKENS)))
    ids, labels = prompter.t2i(["a red circle", "two stars", ""], images, images)
    masked, masked_labels = module.mask_images("t2i", ids, labels, module.generator(5))
    image = slice(M + 2, M + 2 + N_TOKENS)
    outside = torch.ones_like(ids, dtype=torch.bool)
    outside[:, image] = False
    assert torch.equal(masked[outside], ids[outside]) and torch.equal(masked_labels[outside], labels[outside])
    hidden = masked[:, image] == vocab.mask_id
    assert (hidden.sum(1) >= 1).all()
    # targets exactly where masked, holding the original codes; SOI and EOI keep their identity targets
    assert torch.equal(masked_labels[:, image] != -100, hidden)
    assert torch.equal(masked_labels[:, image][hidden], images[hidden])
    assert (masked_labels[:, M + 1] == vocab.soi_id).all() and (masked_labels[:, -1] == vocab.eoi_id).all()
    again, _ = module.mask_images("t2i", ids, labels, module.generator(5))
    other, _ = module.mask_images("t2i", ids, labels, module.generator(6))
    assert torch.equal(again, masked) and not torch.equal(other, masked)
    # mixed rows: each frame is masked on its own (at least one token per frame)
    frames = images[:2].view(1, 2, N_TOKENS)
    mixed_ids, mixed_labels = prompter.mixed(frames, [["a red circle", "it moves"]], labels=frames)
    out, _ = module.mask_images("mixed", mixed_ids, mixed_labels, module.generator(1))
    per_frame = (out == vocab.mask_id).view(-1)[vocab.is_image(mixed_ids).view(-1)].view(2, N_TOKENS)
    assert (per_frame.sum(1) >= 1).all()
    # understanding rows are never masked
    mmu_ids, mmu_labels = prompter.mmu(images, ["USER: \nDescribe. ASSISTANT: a"] * 3)
    assert torch.equal(module.mask_images("mmu", mmu_ids, mmu_labels, module.generator(1))[0], mmu_ids)


def test_losses_match_the_dense_logits_of_the_whole_model(
    tmp_path, tiny_showo, tiny_llm_dir, image_tokenizer_dir, shards
):
    """The module's head-at-labelled-positions loss equals showo_loss over ShowO.forward's full logits."""
    recipe = load_recipe(
        write_recipe(tmp_path / "r.yaml", recipe_dict(tmp_path, tiny_llm_dir, image_tokenizer_dir, shards))
    )
    module = ShowoModule(copy.deepcopy(tiny_showo), recipe)
    vocab, prompter = tiny_showo.vocab, tiny_showo.prompter()
    images = vocab.codes_to_ids(torch.randint(0, vocab.codebook_size, (3, N_TOKENS)))
    t2i = module.mask_images(
        "t2i", *prompter.t2i(["a red circle", "two stars", ""], images, images), module.generator(0)
    )
    rows = {"t2i": t2i, "mmu": prompter.mmu(images[:2], ["USER: \nDescribe. ASSISTANT: a red circle"] * 2)}
    out, labelled = module.losses(rows)
    logits = {t: module.model(ids, omni_attention_mask(ids, vocab, t)) for t, (ids, _) in rows.items()}
    dense = showo_loss(logits, {t: lab for t, (_, lab) in rows.items()}, None, module.coeffs, max_text_len=M)
    for key in ("loss", "loss_t2i", "loss_mmu"):
        assert torch.allclose(out[key], dense[key], atol=1e-5), key
    acc = module.image_accuracy(labelled)["acc_t2i"]
    target = vocab.is_image(t2i[1])
    assert torch.isclose(acc, (logits["t2i"][target].argmax(-1) == t2i[1][target]).float().mean())
