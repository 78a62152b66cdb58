"""A smaller Show-o than the shared `tiny_showo` (4x4 code grid, 64 codes) so the many sampler runs stay cheap."""

import pytest


@pytest.fixture(scope="session")
def small_showo(tiny_llm_dir):
    from showo.model import ShowO

    return ShowO.build(tiny_llm_dir, None, codebook_size=64, num_image_tokens=16, max_text_len=16).eval()
