"""The diffusion sampler: the cached text prefix gives the latents of recomputing everything, with and without
guidance, for epsilon and flow; Transfusion's mode switching in mixed-modality generation."""

import copy

import pytest
import torch

from showo import objectives
from showo.errors import ShowoError
from showo.objectives.diffusion import DiffusionObjective
from showo.sampling import diffusion, mixed
from tests.sampling.conftest import diffusion_model

PROMPTS = ["a red circle", "two blue squares and a star"]


def _generate(model, use_cache, steps=4, guidance=2.0, prompts=PROMPTS):
    options = model.objective.options(steps=steps, guidance=guidance)
    gen = torch.Generator().manual_seed(0)
    return diffusion.generate(model, model.prompter(), prompts, options, gen, use_cache=use_cache)


@pytest.mark.parametrize("prediction", ["epsilon", "flow"])
@pytest.mark.parametrize("guidance", [0.0, 2.0])
def test_the_cached_sampler_gives_the_latents_of_recompute(tiny_llm_dir, prediction, guidance):
    model = diffusion_model(tiny_llm_dir, prediction)
    cached, full = _generate(model, True, guidance=guidance), _generate(model, False, guidance=guidance)
    assert cached.shape == (2, 4, 8, 8) and torch.isfinite(cached).all()
    torch.testing.assert_close(cached, full, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(cached[0], cached[1], atol=1e-3)  # the prompt reaches the image


def test_guidance_combines_conditional_and_null_prompt_predictions(diffusion_showo, monkeypatch):
    """One flow step by hand: x_prev = x + (sigma_next - sigma) * ((1+w) v_cond - w v_null), with v from two
    unguided runs (the conditional prompt, then the empty one) on the same noise."""
    model = copy.deepcopy(diffusion_showo)
    model.config.objective = {**model.config.objective, "prediction": "flow"}
    seen = []
    real = diffusion.image_predictor

    def spy(*args, **kwargs):
        predict = real(*args, **kwargs)
        return lambda x, t: seen.append(predict(x, t)) or seen[-1]

    monkeypatch.setattr(diffusion, "image_predictor", spy)
    noise = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    guided = _generate(model, True, steps=1, guidance=3.0, prompts=PROMPTS[:1])
    cond = _generate(model, True, steps=1, guidance=0.0, prompts=PROMPTS[:1])
    null = _generate(model, True, steps=1, guidance=0.0, prompts=[""])
    v_guided, v_cond, v_null = seen
    torch.testing.assert_close(v_guided, 4.0 * v_cond - 3.0 * v_null, rtol=1e-4, atol=1e-5)
    sigmas = diffusion.sampling_scheduler(model.objective, 1).sigmas
    torch.testing.assert_close(guided, noise + (sigmas[1] - sigmas[0]) * v_guided, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(cond, noise + (sigmas[1] - sigmas[0]) * v_cond, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(null, cond)


@pytest.mark.parametrize("solver", ["ddim", "ddpm"])
def test_an_oracle_noise_prediction_lands_on_the_clean_latent(diffusion_showo, solver):
    """Each epsilon solver, fed the exact noise of a known clean latent x0 at every step (from the training
    schedule's alpha-bar), ends on x0: timesteps, scaling and the ancestral noise are wired consistently."""
    scheduler = diffusion.sampling_scheduler(diffusion_showo.objective, 5, solver)
    alpha_bar = scheduler.alphas_cumprod
    x0 = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(4))

    def oracle(latents: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
        a = alpha_bar[int(timestep)]
        return (latents - a.sqrt() * x0) / (1 - a).sqrt()

    gen = torch.Generator().manual_seed(0)
    out = diffusion.denoise(oracle, scheduler, tuple(x0.shape), gen, torch.device("cpu"))
    torch.testing.assert_close(out, x0, rtol=1e-4, atol=1e-4)


def test_ddpm_draws_fresh_noise_from_the_generator_and_caches_like_recompute(diffusion_showo):
    def run(solver: str, seed: int, use_cache: bool = True) -> torch.Tensor:
        options = diffusion_showo.objective.options(steps=4, guidance=2.0, solver=solver)
        gen = torch.Generator().manual_seed(seed)
        prompter = diffusion_showo.prompter()
        return diffusion.generate(diffusion_showo, prompter, PROMPTS, options, gen, use_cache=use_cache)

    ddpm = run("ddpm", 0)
    torch.testing.assert_close(ddpm, run("ddpm", 0, use_cache=False), rtol=1e-4, atol=1e-4)
    assert torch.equal(ddpm, run("ddpm", 0))
    assert not torch.allclose(ddpm, run("ddim", 0), atol=1e-3)  # the same start, other updates
    assert not torch.allclose(ddpm, run("ddpm", 1), atol=1e-3)


def test_a_solver_of_the_other_prediction_or_objective_is_one_line(diffusion_showo, tiny_showo):
    with pytest.raises(ShowoError, match="solver 'euler' cannot sample epsilon-prediction"):
        diffusion.sampling_scheduler(diffusion_showo.objective, 2, "euler")
    flow = objectives.get({**diffusion_showo.config.objective, "prediction": "flow"})
    with pytest.raises(ShowoError, match="solver 'ddpm' cannot sample rectified flow"):
        diffusion.sampling_scheduler(flow, 2, "ddpm")
    with pytest.raises(ShowoError, match="unknown solver 'heun'"):
        diffusion_showo.objective.options(solver="heun")
    with pytest.raises(ShowoError, match="takes no solver option"):
        tiny_showo.objective.options(solver="ddpm")


@pytest.mark.parametrize("steps", [0, -3, 2.5, True])
def test_zero_negative_or_non_integer_steps_are_one_line(diffusion_showo, steps):
    with pytest.raises(ShowoError, match="steps must be a positive integer"):
        diffusion_showo.objective.options(steps=steps)
    options = copy.copy(diffusion_showo.objective.options(steps=2))
    options.steps = steps
    with pytest.raises(ShowoError, match="steps must be a positive integer"):
        diffusion.generate(diffusion_showo, diffusion_showo.prompter(), ["x"], options)


def _layout(ids, vocab, num):
    """The sequence as (mode, length) runs: text, then for each image [soi], N image positions, [eoi]."""
    runs, position, ids = [], 0, ids.tolist()
    while position < len(ids):
        if ids[position] == vocab.soi_id:
            block = ids[position : position + num + 2]
            assert block[-1] == vocab.eoi_id and all(vocab.is_image(torch.tensor(block[1:-1])))
            runs.append(("image", num))
            position += num + 2
        else:
            start = position
            while position < len(ids) and ids[position] != vocab.soi_id:
                assert ids[position] < vocab.text_size or ids[position] in (vocab.lvg_id, vocab.bos_id)
                position += 1
            runs.append(("text", position - start))
    return runs


def test_mixed_generation_switches_to_diffusion_at_soi_and_back_to_text_at_eoi(diffusion_showo, monkeypatch):
    """Text is decoded until an image opens ([soi]: the caption budget is full, or the model asks for one);
    the image's positions are denoised, never sampled as tokens; [eoi] closes it and text decoding resumes."""
    model, vocab, num = copy.deepcopy(diffusion_showo), diffusion_showo.vocab, 16
    entered = []
    real = DiffusionObjective.sample_frame

    def spy(self, sequence, options, generator):
        entered.append(sequence.ids[0].clone())
        return real(self, sequence, options, generator)

    monkeypatch.setattr(DiffusionObjective, "sample_frame", spy)
    prompter = model.prompter()
    given, budget = len(prompter.tokenize(["a red circle"])[0]), (prompter.max_text_len - 2) // 3

    def run():
        entered.clear()
        gen = torch.Generator().manual_seed(0)
        return mixed.generate(
            model, prompter, [["a red circle"]], 3, steps=2, temperature=1.0, generator=gen
        )[0]

    with torch.no_grad():
        model.llm.lm_head.bias[vocab.eos_id] = -1e4  # no early end: every frame is drawn
        model.llm.lm_head.bias[vocab.soi_id] = -1e4  # the model never asks: each caption fills its budget
    sample = run()
    assert sample.codes.shape == (3, 4, 8, 8) and len(sample.captions) == 3
    assert [_layout(ids, vocab, num) for ids in entered] == [
        [("text", 2 + given)],
        [("text", 2 + given), ("image", num), ("text", budget)],
        [("text", 2 + given), ("image", num), ("text", budget), ("image", num), ("text", budget)],
    ]
    with torch.no_grad():
        model.llm.lm_head.bias[vocab.soi_id] = 1e4  # the model asks for an image at once
    sample = run()
    assert sample.captions[1:] == ["", ""] and sample.codes.shape == (3, 4, 8, 8)
    assert _layout(entered[-1], vocab, num) == [("text", 2 + given), ("image", num), ("image", num)]


def test_text_after_an_image_sees_its_clean_latents_and_cached_equals_recompute(diffusion_showo):
    model, vocab = diffusion_showo, diffusion_showo.vocab
    start = [vocab.lvg_id, vocab.bos_id, *model.prompter().tokenize(["a red circle"])[0]]
    options = model.objective.options(steps=2)
    logits, latents = [], []
    for seed, use_cache in [(0, True), (0, False), (1, True)]:
        seq = mixed.Sequence(model, start, use_cache)
        latents.append(model.objective.sample_frame(seq, options, torch.Generator().manual_seed(seed)))
        assert seq.ids[0, -1] == vocab.eoi_id and seq.ids[0, len(start)] == vocab.soi_id
        logits.append(seq.next_logits())
    torch.testing.assert_close(latents[0], latents[1], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(logits[0], logits[1], rtol=1e-4, atol=1e-4)
    assert not torch.allclose(latents[0], latents[2]) and not torch.allclose(logits[0], logits[2], atol=1e-4)
    recomputed = model(
        seq.ids,
        model.kernel_mask(seq._mask(seq.ids)),
        image_embeds=diffusion.clean_embeds(model, latents[2].unsqueeze(0)),
    )[:, -1].float()
    torch.testing.assert_close(logits[2], recomputed, rtol=1e-4, atol=1e-4)


def test_cached_mixed_diffusion_generation_equals_recompute(diffusion_showo):
    def run(use_cache):
        gen = torch.Generator().manual_seed(3)
        return mixed.generate(
            diffusion_showo,
            diffusion_showo.prompter(),
            [["a red"]],
            3,
            steps=2,
            temperature=1.0,
            generator=gen,
            use_cache=use_cache,
        )[0]

    cached, full = run(True), run(False)
    assert cached.captions == full.captions
    torch.testing.assert_close(cached.codes, full.codes, rtol=1e-4, atol=1e-4)
