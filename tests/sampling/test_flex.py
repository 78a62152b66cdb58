"""Every sampler on a flex model (FlexAttention block masks from the same omni rule) draws what the sdpa
model draws: MaskGIT codes cached and recomputed, AR codes, understanding tokens, mixed generation, and the
diffusion sampler's latents cached and recomputed."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
from transformers import PhiForCausalLM

from showo.model import ShowO, phi_config
from showo.sampling import ar, diffusion, maskgit, mixed, understand


def as_flex(model: ShowO) -> ShowO:
    """The same weights (the image head's too) on FlexAttention."""
    llm = PhiForCausalLM(phi_config(model.llm.config, "flex"))
    llm.load_state_dict(model.llm.state_dict())
    flex = ShowO(llm, model.vocab, copy.deepcopy(model.config), model.tokenizer).eval()
    if model.image_head is not None:
        flex.image_head.load_state_dict(model.image_head.state_dict())
    assert flex.uses_flex and not model.uses_flex
    return flex


@pytest.fixture(scope="module")
def pair(tiny_showo):
    return tiny_showo.eval(), as_flex(tiny_showo)


def quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


@pytest.mark.parametrize("use_cache", [True, False])
def test_maskgit_codes_are_identical(pair, use_cache):
    codes = [
        quiet(
            maskgit.generate,
            model,
            model.prompter(),
            ["a red circle", "two stars"],
            steps=4,
            guidance=1.5,
            generator=torch.Generator().manual_seed(3),
            use_cache=use_cache,
        )
        for model in pair
    ]
    assert torch.equal(codes[0], codes[1])


def test_ar_codes_are_identical(pair):
    codes = [
        quiet(
            ar.generate,
            m,
            m.prompter(),
            ["a red circle"],
            guidance=1.5,
            generator=torch.Generator().manual_seed(5),
        )
        for m in pair
    ]
    assert torch.equal(codes[0], codes[1])


def test_understanding_tokens_are_identical(pair):
    sdpa, _ = pair
    gen = torch.Generator().manual_seed(2)
    images = sdpa.vocab.codes_to_ids(
        torch.randint(0, sdpa.vocab.codebook_size, (2, sdpa.config.num_image_tokens), generator=gen)
    )
    questions = ["What is it?", "Describe the picture in detail."]
    out = [quiet(understand.decode_ids, m, m.prompter(), images, questions, 8) for m in pair]
    assert out[0] == out[1]


def test_mixed_generation_is_identical(pair):
    captions = [["a red circle", "the circle moves right"]]
    out = [
        quiet(
            mixed.generate,
            m,
            m.prompter(),
            captions,
            2,
            steps=3,
            temperature=1.0,
            top_k=30,
            generator=torch.Generator().manual_seed(0),
        )[0]
        for m in pair
    ]
    assert out[0].captions == out[1].captions and torch.equal(out[0].codes, out[1].codes)


@pytest.mark.parametrize("use_cache", [True, False])
def test_diffusion_latents_are_the_same(diffusion_showo, use_cache):
    options = diffusion_showo.objective.options(steps=3, guidance=2.0)
    latents = [
        quiet(
            diffusion.generate,
            m,
            m.prompter(),
            ["a red circle", "two stars"],
            options,
            torch.Generator().manual_seed(0),
            use_cache=use_cache,
        )
        for m in (diffusion_showo, as_flex(diffusion_showo))
    ]
    torch.testing.assert_close(latents[1], latents[0], rtol=1e-4, atol=1e-4)
