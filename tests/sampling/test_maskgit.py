"""MaskGIT: prefix cache equals full recompute, the CFG formula, the step counts inside the sampler."""

from types import SimpleNamespace

import torch

from showo.attention import omni_attention_mask
from showo.sampling import maskgit
from showo.sampling.kv import FrozenPrefix
from showo.sampling.remask import sample_codes
from showo.sampling.schedules import remaining_counts

PROMPTS = ["a red circle and a blue square", "two green stars"]


def _gen(seed):
    return torch.Generator().manual_seed(seed)


class _Recorder:
    """Records the ids every full forward sees (the uncached path calls model.forward each step)."""

    def __init__(self, model):
        self.calls = []
        self.handle = model.register_forward_hook(self._hook, with_kwargs=True)

    def _hook(self, module, args, kwargs, output):
        self.calls.append((args[0] if args else kwargs["input_ids"]).clone())

    def close(self):
        self.handle.remove()


def test_prefix_cache_logits_equal_recompute(tiny_showo):
    model, prompter = tiny_showo, tiny_showo.prompter()
    vocab, n = model.vocab, prompter.num_image_tokens
    image = torch.randint(0, vocab.codebook_size, (2, n)) + vocab.image_offset
    image[:, ::3] = vocab.mask_id
    ids = torch.cat([prompter.t2i_gen(PROMPTS, image), prompter.t2i_gen(["", ""], image)])
    mask = omni_attention_mask(ids, vocab, "t2i")
    soi = ids.shape[1] - n - 2
    full = model(ids, mask)
    prefix = FrozenPrefix.prefill(model, ids, mask, soi)
    positions = torch.arange(soi, ids.shape[1]).expand(4, -1)
    for _ in range(2):  # a second call must see the same prefix (the cache was cropped back)
        cached = model.head_logits(prefix(ids[:, soi:], mask[:, :, soi:], positions))
        assert torch.allclose(cached, full[:, soi:], atol=1e-4, rtol=1e-4)
    assert prefix.cache.get_seq_length() == soi


def test_cached_and_recomputed_sampling_give_identical_codes(small_showo, tiny_showo):
    for model, steps, settings in (
        (small_showo, 8, ((0.0, "maskgit"), (2.0, "official"))),
        (tiny_showo, 2, ((2.0, "maskgit"),)),
    ):
        prompter = model.prompter()
        for guidance, schedule in settings:
            kwargs = dict(steps=steps, guidance=guidance, temperature_schedule=schedule)
            cached = maskgit.generate(model, prompter, PROMPTS, generator=_gen(3), **kwargs)
            full = maskgit.generate(model, prompter, PROMPTS, generator=_gen(3), use_cache=False, **kwargs)
            assert cached.shape == (2, prompter.num_image_tokens)
            assert torch.equal(cached, full)
            assert int(cached.min()) >= 0 and int(cached.max()) < model.vocab.codebook_size
    prompter = small_showo.prompter()
    first, second, other = (
        maskgit.generate(small_showo, prompter, PROMPTS, steps=8, generator=_gen(s)) for s in (5, 5, 6)
    )
    assert torch.equal(first, second) and not torch.equal(first, other)


def test_one_step_draw_follows_the_cfg_formula_on_raw_logits(tiny_showo):
    """With T=1 every position is one categorical draw from softmax((1+w)c - w*u) over the code columns."""
    model, prompter = tiny_showo, tiny_showo.prompter()
    vocab, n, w = model.vocab, prompter.num_image_tokens, 3.0
    codes = maskgit.generate(model, prompter, PROMPTS, steps=1, guidance=w, generator=_gen(11))

    image = torch.full((2, n), vocab.mask_id)
    cond_ids, uncond_ids = prompter.t2i_gen(PROMPTS, image), prompter.t2i_gen(["", ""], image)
    img = slice(cond_ids.shape[1] - n - 1, cond_ids.shape[1] - 1)

    def reference(combine):
        cond = model(cond_ids, omni_attention_mask(cond_ids, vocab, "t2i"))[:, img]
        uncond = model(uncond_ids, omni_attention_mask(uncond_ids, vocab, "t2i"))[:, img]
        probs = torch.softmax(combine(cond, uncond)[..., vocab.image_slice], dim=-1)
        return sample_codes(probs, _gen(11))

    assert torch.equal(codes, reference(lambda c, u: (1 + w) * c - w * u))
    assert not torch.equal(codes, reference(lambda c, u: u + w * (c - u)))


def test_uncond_rows_share_the_current_image_tokens(small_showo):
    model, prompter = small_showo, small_showo.prompter()
    vocab, n = model.vocab, prompter.num_image_tokens
    recorder = _Recorder(model)
    try:
        maskgit.generate(model, prompter, PROMPTS, steps=6, guidance=1.5, generator=_gen(0), use_cache=False)
    finally:
        recorder.close()
    null = prompter.t2i_gen(["", ""], torch.full((2, n), vocab.mask_id))
    text, img = slice(0, null.shape[1] - n - 2), slice(null.shape[1] - n - 1, null.shape[1] - 1)
    assert len(recorder.calls) == 6
    for ids in recorder.calls:
        assert torch.equal(ids[2:, text], null[:, text])
        assert torch.equal(ids[2:, img], ids[:2, img])


def test_the_loop_leaves_the_official_number_of_masked_tokens():
    """N=256, T=18: the grid a step sees holds 256, 255, 252, ..., 22 masks, whatever the logits."""
    vocab = SimpleNamespace(image_offset=10, codebook_size=32, mask_id=42)
    seen = []

    def image_logits(current, select):
        seen.append((current == vocab.mask_id).sum(dim=1).tolist())
        return torch.randn(int(select.sum()), vocab.codebook_size, generator=_gen(len(seen)))

    start = torch.full((2, 256), vocab.mask_id)
    codes = maskgit.decode_grid(image_logits, start, vocab, 18, generator=_gen(0))
    expected = [256] + remaining_counts(256, 18)[:-1]
    assert seen == [[c, c] for c in expected]
    assert int(codes.min()) >= 0 and int(codes.max()) < vocab.codebook_size


def test_cache_equals_recompute_under_eager_attention_too(tiny_llm_dir):
    """Eager attention adds the float mask itself (and would ignore a bool one): check the cache there too."""
    from showo.model import ShowO
    from showo.sampling import understand

    model = ShowO.build(tiny_llm_dir, None, 64, 16, 16, attn_implementation="eager").eval()
    prompter = model.prompter()
    runs = [
        maskgit.generate(model, prompter, PROMPTS, 5, 2.0, generator=_gen(2), use_cache=c)
        for c in (True, False)
    ]
    assert torch.equal(runs[0], runs[1])
    images = torch.randint(0, 64, (2, 16), generator=_gen(1)) + model.vocab.image_offset
    tokens = [understand.decode_ids(model, prompter, images, PROMPTS, 6, use_cache=c) for c in (True, False)]
    assert tokens[0] == tokens[1]
