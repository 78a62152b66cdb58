"""A smaller Show-o than the shared `tiny_showo` (4x4 code grid, 64 codes) so the many sampler runs stay cheap."""

import pytest


@pytest.fixture(scope="session")
def small_showo(tiny_llm_dir):
    from showo.model import ShowO

    return ShowO.build(tiny_llm_dir, None, codebook_size=64, num_image_tokens=16, max_text_len=16).eval()


@pytest.fixture(scope="session")
def sampling_ckpt(small_showo, tmp_path_factory):
    """An exported-style checkpoint dir: the small model plus a matching tiny image tokenizer (64 codes,
    downsample 4, so 16x16 pixels <-> the model's 4x4 grid) in `image_tokenizer/`."""
    import torch

    from showo.tokenizer import ImageTokenizer, TokenizerConfig

    out = tmp_path_factory.mktemp("sampling_ckpt")
    small_showo.save_pretrained(out)
    torch.manual_seed(0)
    config = TokenizerConfig(
        ch=8,
        ch_mult=[1, 1, 1],
        num_res_blocks=[1, 1, 1],
        decoder_ch_mult=[1, 1, 1],
        decoder_num_res_blocks=[1, 1, 1],
        z_channels=6,
        resolution=16,
        norm_groups=4,
    )
    ImageTokenizer(config).save_pretrained(out / "image_tokenizer")
    return out
