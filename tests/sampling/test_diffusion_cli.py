"""`showo generate`, `caption`, `interleave` and `eval` on a diffusion checkpoint: the recorded objective picks
the diffusion sampler and the VAE in the export decodes (and encodes) its images; bad input is one line."""

import json

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL
from PIL import Image

from showo.cli import main
from showo.sampling import diffusion
from showo.sampling.images import save_grid
from showo.sampling.pipeline import load_pipeline

ARGS = ["--device", "cpu", "--seed", "4"]


def _vae_pixels(ckpt, latents):
    """The reference decode: unscale by the recorded objective, then diffusers' own AutoencoderKL."""
    config = json.loads((ckpt / "config.json").read_text())["objective"]
    vae = AutoencoderKL.from_pretrained(
        ckpt / "vae", use_safetensors=True, local_files_only=True, low_cpu_mem_usage=False
    ).eval()
    raw = latents / config["scaling_factor"] + config["shift_factor"]
    with torch.no_grad():
        return vae.decode(raw).sample


def test_generate_draws_with_the_diffusion_sampler_and_decodes_with_the_vae(diffusion_ckpt, tmp_path, capsys):
    out = tmp_path / "grid.png"
    argv = ["generate", "--ckpt", str(diffusion_ckpt), *ARGS, "--prompt", "a red circle", "--n", "2"]
    assert main([*argv, "--steps", "3", "--guidance", "2", "--out", str(out)]) == 0
    assert str(out) in capsys.readouterr().out
    pipe = load_pipeline(diffusion_ckpt, device="cpu")
    assert pipe.objective.sampler == "diffusion" and pipe.resolution == 16
    options = pipe.objective.options(steps=3, guidance=2.0)
    latents = diffusion.generate(pipe.model, pipe.prompter, ["a red circle"] * 2, options, pipe.generator(4))
    expected = save_grid(_vae_pixels(diffusion_ckpt, latents), tmp_path / "ref.png", ncol=2)
    with Image.open(out) as grid, Image.open(expected) as ref:
        assert grid.size == (2 * 16 + 2, 16)
        assert np.array_equal(np.asarray(grid), np.asarray(ref))


def test_caption_feeds_the_vae_latents_of_the_image(diffusion_ckpt, tmp_path, capsys):
    from showo.sampling import understand
    from showo.tokenizer.transform import showo_transform

    image = Image.new("RGB", (20, 16), (200, 40, 40))
    image.save(tmp_path / "red.png")
    argv = ["caption", "--ckpt", str(diffusion_ckpt), "--device", "cpu", "--max-new-tokens", "5"]
    assert main([*argv, "--image", str(tmp_path / "red.png")]) == 0
    answer = capsys.readouterr().out.strip()
    pipe = load_pipeline(diffusion_ckpt, device="cpu")
    vae = AutoencoderKL.from_pretrained(
        diffusion_ckpt / "vae", use_safetensors=True, local_files_only=True, low_cpu_mem_usage=False
    )
    pixels = showo_transform(image, 16)[0].unsqueeze(0)
    with torch.no_grad():
        scaled = (vae.eval().encode(pixels).latent_dist.mean - 0.25) * 0.5
    torch.testing.assert_close(pipe.encode_images([image]), scaled, rtol=1e-5, atol=1e-5)
    expected = understand.decode(pipe.model, pipe.prompter, scaled, ["Describe the image."], max_new_tokens=5)
    assert answer == expected[0]


def test_understanding_on_the_cache_equals_recompute_with_latents(diffusion_showo):
    from showo.sampling import understand

    latents = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    questions = ["What is it?", "Describe the image in detail."]
    kwargs = dict(max_new_tokens=6, temperature=1.0)
    runs = [
        understand.decode_ids(
            diffusion_showo,
            diffusion_showo.prompter(),
            latents,
            questions,
            generator=torch.Generator().manual_seed(1),
            use_cache=use_cache,
            **kwargs,
        )
        for use_cache in (True, False)
    ]
    assert runs[0] == runs[1] and all(len(row) > 0 for row in runs[0])


def test_interleave_writes_text_and_vae_decoded_images(diffusion_ckpt, tmp_path):
    out = tmp_path / "seq"
    argv = ["interleave", "--ckpt", str(diffusion_ckpt), *ARGS, "--prompt", "a red", "--prompt", "a blue"]
    assert main([*argv, "--steps", "2", "--out", str(out)]) == 0
    record = json.loads((out / "sequence.json").read_text())
    assert [item["kind"] for item in record["items"]] == ["text", "image", "text", "image"]
    assert record["sampler"] == "diffusion" and record["options"]["steps"] == 2
    for item in record["items"][1::2]:
        with Image.open(out / item["file"]) as image:
            assert image.size == (16, 16)


def test_eval_runs_a_generation_and_an_understanding_suite(diffusion_ckpt, tmp_path):
    from showo.eval.suites import SuiteSettings, run_suite

    settings = SuiteSettings(steps=2, samples_per_class=1, caption_images=2, caption_tokens=3)
    digits = run_suite(diffusion_ckpt, "digits", settings=settings, sheet=tmp_path / "sheet.png")
    assert digits["sampler"] == "diffusion" and digits["scores"]["n"] == 10
    assert digits["sampler_options"]["steps"] == 2 and digits["image_tokenizer"].startswith("autoencoder-kl-")
    with Image.open(tmp_path / "sheet.png") as sheet:
        assert sheet.size == (16, 10 * 16 + 9 * 2)  # one column: samples_per_class
    captions = run_suite(diffusion_ckpt, "caption-mini", settings=settings)
    assert len(captions["scores"]["examples"]) == 2
    out = tmp_path / "digits.json"
    argv = ["eval", "--ckpt", str(diffusion_ckpt), "--suite", "digits", "--steps", "1", "--out", str(out)]
    assert main(argv) == 0 and json.loads(out.read_text())["sampler_options"]["steps"] == 1


GEN = ["generate", "--prompt", "x", "--out", "{tmp}/grid.png"]


@pytest.mark.parametrize(
    ("argv", "cause"),
    [
        ([*GEN, "--steps", "0"], "--steps: must be at least 1"),
        ([*GEN, "--steps", "-2"], "--steps: must be at least 1"),
        ([*GEN, "--top-k", "3"], "the diffusion sampler (objective diffusion) takes no top-k option"),
        ([*GEN, "--sampler", "maskgit"], "cannot sample a checkpoint trained with the diffusion objective"),
        (["interleave", "--prompt", "x", "--steps", "0", "--out", "{tmp}/s"], "--steps: must be at least 1"),
        (["eval", "--suite", "digits", "--steps", "0"], "--steps: must be at least 1"),
        ([*GEN, "--image-tokenizer", "{tmp}"], "--image-tokenizer does not apply"),
        ([*GEN, "--ckpt", "{no_vae}"], "records no vae directory"),
    ],
)
def test_bad_input_on_a_diffusion_checkpoint_is_one_line(diffusion_ckpt, tmp_path, capsys, argv, cause):
    import shutil

    no_vae = tmp_path / "no_vae"
    shutil.copytree(diffusion_ckpt, no_vae, ignore=shutil.ignore_patterns("vae"))
    argv = [arg.format(tmp=tmp_path, no_vae=no_vae) for arg in argv]
    assert main([argv[0], "--ckpt", str(diffusion_ckpt), *argv[1:]]) == 2  # a later --ckpt wins
    err = capsys.readouterr().err
    assert err.startswith("showo: error: ") and err.count("\n") == 1 and cause in err
    assert not (tmp_path / "grid.png").exists()
