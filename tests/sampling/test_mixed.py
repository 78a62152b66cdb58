"""Mixed-modality generation: cached == recompute, given captions kept, layout of the sequence."""

import copy

import torch

from showo.sampling import mixed


def _run(model, captions, use_cache, **kwargs):
    gen = torch.Generator().manual_seed(0)
    return mixed.generate(
        model, model.prompter(), captions, 3, steps=4, generator=gen, use_cache=use_cache, **kwargs
    )


def test_cached_mixed_generation_equals_recompute(small_showo):
    captions = [["a red circle", "the circle moves right"], ["a blue star"]]
    for kwargs in (dict(temperature=1.0, top_k=30),):
        cached, full = (
            _run(small_showo, captions, True, **kwargs),
            _run(small_showo, captions, False, **kwargs),
        )
        for a, b in zip(cached, full):
            assert a.captions == b.captions
            assert torch.equal(a.codes, b.codes)
    prompter = small_showo.prompter()
    budget = (prompter.max_text_len - 2) // 3  # the training layout's per-caption budget for 3 frames
    kept = [prompter.tokenizer.decode(ids[:budget]).strip() for ids in prompter.tokenize(captions[0])]
    assert cached[0].captions[:2] == kept
    assert cached[0].codes.shape == (3, small_showo.config.num_image_tokens)


def test_an_image_is_opened_when_the_model_asks_and_eos_ends_the_row(small_showo):
    model = copy.deepcopy(small_showo)
    vocab = model.vocab
    with torch.no_grad():
        model.llm.lm_head.bias[vocab.soi_id] = 1e4  # open an image at once: empty decoded captions
    out = _run(model, [["a red"]], True)[0]
    assert out.captions == ["a red", "", ""] and out.codes.shape[0] == 3
    with torch.no_grad():
        model.llm.lm_head.bias[vocab.soi_id] = 0.0
        model.llm.lm_head.bias[vocab.eos_id] = 1e4  # end of sequence after the given caption's image
    out = _run(model, [["a red"]], True)[0]
    assert out.captions == ["a red"] and out.codes.shape[0] == 1
