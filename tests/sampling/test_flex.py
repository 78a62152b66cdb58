"""Every sampler on a flex model (FlexAttention block masks from the same omni rule) draws what the sdpa
model draws: MaskGIT codes cached and recomputed, AR codes, understanding tokens, mixed generation."""

from __future__ import annotations

import warnings

import pytest
import torch
from transformers import PhiForCausalLM

from showo.model import ShowO, phi_config
from showo.sampling import ar, maskgit, mixed, understand


@pytest.fixture(scope="module")
def pair(tiny_showo):
    llm = PhiForCausalLM(phi_config(tiny_showo.llm.config, "flex"))
    llm.load_state_dict(tiny_showo.llm.state_dict())
    flex = ShowO(llm, tiny_showo.vocab, tiny_showo.config, tiny_showo.tokenizer).eval()
    assert flex.uses_flex and not tiny_showo.uses_flex
    return tiny_showo.eval(), flex


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
