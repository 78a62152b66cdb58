"""`draw="multinomial"` follows the official sampler's random draws; the default inverse-CDF path is unchanged.

The reference is the official t2i loop written out step by step (docs/official-differences.md#sampling): full
recompute every step, one `torch.multinomial` over all B*N positions (known ones included, with their real
probabilities), confidence `finfo.max` at known positions, floor(N * cos) clamped to [1, #unknown - 1], the
compounding temperature, Gumbel noise from `uniform_` on the same generator.
"""

import math

import pytest
import torch

from showo.attention import omni_attention_mask
from showo.errors import ShowoError
from showo.sampling import maskgit
from showo.sampling.remask import draw_codes, sample_codes

PROMPTS = ["a red circle and a blue square", "two green stars"]


def _gen(seed):
    return torch.Generator().manual_seed(seed)


@torch.no_grad()
def _official_loop(model, prompter, prompts, image, steps, guidance, tau, gen):
    vocab, n = model.vocab, prompter.num_image_tokens
    ids = prompter.t2i_gen(prompts, image)
    uncond = prompter.t2i_gen([""] * len(prompts), image)
    length = ids.shape[1]
    img, prefix = slice(length - n - 1, length - 1), length - n - 2
    ids_img = torch.where(image == vocab.mask_id, image, image - vocab.image_offset)
    for step in range(steps):
        rows = ids
        if guidance > 0:
            rows = torch.cat([ids, torch.cat([uncond[:, :prefix], ids[:, prefix:]], dim=1)])
        logits = model(rows, omni_attention_mask(rows, vocab, "t2i"))[:, img, vocab.image_slice]
        if guidance > 0:
            cond, unc = logits.chunk(2)
            logits = (1 + guidance) * cond - guidance * unc
        probs = torch.softmax(logits.float(), dim=-1)
        sampled = torch.multinomial(probs.reshape(-1, probs.shape[-1]), 1, generator=gen).view(ids_img.shape)
        unknown = ids_img == vocab.mask_id
        sampled = torch.where(unknown, sampled, ids_img)
        ratio = (step + 1) / steps
        mask_ratio = torch.cos(torch.tensor(ratio, dtype=torch.float32) * math.pi / 2)
        conf = torch.gather(probs, -1, sampled.unsqueeze(-1)).squeeze(-1)
        conf = torch.where(unknown, conf, torch.finfo(conf.dtype).max)
        mask_len = torch.floor(n * mask_ratio)
        mask_len = torch.max(torch.tensor(1.0), torch.min(unknown.sum(-1, keepdim=True) - 1, mask_len))
        tau = tau * (1 - ratio)
        uniform = torch.zeros_like(conf).uniform_(0, 1, generator=gen)
        gumbel = -torch.log((-torch.log(uniform.clamp(1e-20))).clamp(1e-20))
        score = torch.log(conf.clamp(1e-20)) + tau * gumbel
        cut = torch.sort(score, dim=-1).values.gather(1, mask_len.long())
        masking = score < cut
        ids[:, img] = torch.where(masking, vocab.mask_id, sampled + vocab.image_offset)
        ids_img = torch.where(masking, vocab.mask_id, sampled)
    return sampled


@pytest.mark.parametrize("guidance", [0.0, 2.0])
def test_multinomial_draw_reproduces_the_official_loop(small_showo, guidance):
    model, prompter = small_showo, small_showo.prompter()
    vocab, n = model.vocab, prompter.num_image_tokens
    blank = torch.full((2, n), vocab.mask_id)
    known = blank.clone()
    known[:, ::3] = torch.randint(0, vocab.codebook_size, known[:, ::3].shape, generator=_gen(9))
    known[:, ::3] += vocab.image_offset  # an inpainting grid: known rows join the official multinomial
    for image in (blank, known):
        for seed in (0, 1):
            ours = maskgit.generate(
                model,
                prompter,
                PROMPTS,
                steps=8,
                guidance=guidance,
                temperature_schedule="official",
                generator=_gen(seed),
                image_ids=image,
                use_cache=False,
                draw="multinomial",
            )
            official = _official_loop(model, prompter, PROMPTS, image.clone(), 8, guidance, 1.0, _gen(seed))
            assert torch.equal(ours, official)
            default = maskgit.generate(
                model,
                prompter,
                PROMPTS,
                steps=8,
                guidance=guidance,
                temperature_schedule="official",
                generator=_gen(seed),
                image_ids=image,
                use_cache=False,
            )
            assert not torch.equal(default, official)  # the option is what makes the draws match


def test_default_draw_is_the_inverse_cdf():
    probs = torch.softmax(torch.randn(2, 5, 64, generator=_gen(3)), dim=-1)
    unknown = torch.ones(2, 5, dtype=torch.bool)
    drawn = draw_codes(probs.reshape(10, 64), unknown, _gen(4))
    assert torch.equal(drawn, sample_codes(probs, _gen(4)).flatten())
    multi = draw_codes(probs.reshape(10, 64), unknown, _gen(4), "multinomial")
    assert torch.equal(multi, torch.multinomial(probs.reshape(10, 64), 1, generator=_gen(4)).flatten())


def test_default_generate_is_unchanged_by_the_option(small_showo):
    model, prompter = small_showo, small_showo.prompter()
    runs = [
        maskgit.generate(model, prompter, PROMPTS, steps=6, guidance=1.5, generator=_gen(5), **kw)
        for kw in ({}, {"draw": "inverse_cdf"})
    ]
    assert torch.equal(runs[0], runs[1])


def test_an_unknown_draw_is_a_user_error(small_showo):
    with pytest.raises(ShowoError, match="unknown code draw 'gumbel'"):
        maskgit.generate(small_showo, small_showo.prompter(), PROMPTS, steps=2, draw="gumbel")


def test_the_cli_flag_reaches_the_sampler_settings():
    import argparse

    from showo.commands.sampler_options import add_maskgit_args, maskgit_kwargs

    parser = argparse.ArgumentParser()
    add_maskgit_args(parser, steps=4, guidance=0.0)
    assert maskgit_kwargs(parser.parse_args([]))["draw"] == "inverse_cdf"
    assert maskgit_kwargs(parser.parse_args(["--draw", "multinomial"]))["draw"] == "multinomial"
    with pytest.raises(SystemExit):
        parser.parse_args(["--draw", "gumbel"])
