"""Sampling fixtures: one torch thread per test, a smaller Show-o than `tiny_showo` (4x4 grid, 64 codes), an exported checkpoint."""

import pytest
import torch

from tests.fixtures.tokenizer import build_tiny_image_tokenizer


@pytest.fixture(autouse=True)
def one_torch_thread():
    """These models are tiny: a second OpenMP thread only adds spin-waiting (on a shared 2-core box the
    suite took minutes instead of seconds). Restored after each test, so other suites are unaffected."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def small_showo(tiny_llm_dir):
    from showo.model import ShowO

    return ShowO.build(tiny_llm_dir, None, codebook_size=64, num_image_tokens=16, max_text_len=16).eval()


@pytest.fixture(scope="session")
def sampling_ckpt(small_showo, tmp_path_factory):
    """An exported-style checkpoint dir: the small model plus a matching tiny image tokenizer (64 codes,
    downsample 4, so 16x16 pixels <-> the model's 4x4 grid) in `image_tokenizer/`."""
    out = tmp_path_factory.mktemp("sampling_ckpt")
    small_showo.save_pretrained(out)
    build_tiny_image_tokenizer(
        ch_mult=[1, 1, 1], decoder_ch_mult=[1, 1, 1], z_channels=6, resolution=16
    ).save_pretrained(out / "image_tokenizer")
    return out


def with_objective(src, dst, objective):
    """A copy of checkpoint `src` whose config.json records `objective` (None: no objective recorded, as
    every checkpoint exported before objectives were)."""
    import json
    import shutil

    shutil.copytree(src, dst)
    config = json.loads((dst / "config.json").read_text())
    config.pop("objective", None)
    if objective is not None:
        config["objective"] = objective
    (dst / "config.json").write_text(json.dumps(config))
    return dst


@pytest.fixture(scope="session")
def ar_sampling_ckpt(sampling_ckpt, tmp_path_factory):
    """`sampling_ckpt` recorded as trained with the AR objective."""
    return with_objective(sampling_ckpt, tmp_path_factory.mktemp("ar") / "ckpt", {"image": "ar"})


DIFFUSION = {
    "image": "diffusion",
    "patch_size": 2,
    "latent_channels": 4,
    "scaling_factor": 0.5,
    "shift_factor": 0.25,
}
"""A 4x4 grid of image positions = 8x8 latents of 4 channels in 2x2 patches; the tiny VAE makes them 16x16
pixels."""


def diffusion_model(tiny_llm_dir, prediction: str = "epsilon"):
    """A small Show-o with the diffusion objective. Its output projection is drawn at random: the zero one a new
    head starts from would predict the same for every input, and no test could tell a wrong input apart."""
    from showo.model import ShowO

    model = ShowO.build(
        tiny_llm_dir, None, 16, 16, 16, objective={**DIFFUSION, "prediction": prediction}
    ).eval()
    with torch.no_grad():
        model.image_head.proj_out.weight.normal_(0.0, 0.2, generator=torch.Generator().manual_seed(1))
    return model


@pytest.fixture(scope="session")
def diffusion_showo(tiny_llm_dir):
    return diffusion_model(tiny_llm_dir)


@pytest.fixture(scope="session")
def sampling_vae_dir(tmp_path_factory):
    """A diffusers AutoencoderKL directory (random weights): 4 latent channels, downsampling 2."""
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    vae = AutoencoderKL(
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        block_out_channels=(8, 16),
        latent_channels=4,
        norm_num_groups=4,
        sample_size=16,
    )
    out = tmp_path_factory.mktemp("vae")
    vae.save_pretrained(out, safe_serialization=True)
    return out


@pytest.fixture(scope="session")
def diffusion_ckpt(diffusion_showo, sampling_vae_dir, tmp_path_factory):
    """An exported-style diffusion checkpoint: the model and its VAE in `vae/`."""
    import shutil

    out = tmp_path_factory.mktemp("diffusion_ckpt")
    diffusion_showo.save_pretrained(out)
    shutil.copytree(sampling_vae_dir, out / "vae")
    return out
