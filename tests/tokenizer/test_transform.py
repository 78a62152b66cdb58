"""The one Show-o image transform: short-side bicubic resize, centre crop, [-1, 1]."""

import numpy as np
import pytest
import torch
from PIL import Image

from showo.errors import ShowoError
from showo.tokenizer.transform import showo_transform, to_image


def photo(w, h, seed=0, mode="RGB"):
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "RGBA": 4}.get(mode)
    shape = (h, w, channels) if channels else (h, w)
    return Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode)


def test_landscape_resize_then_centre_crop_matches_numpy_reference():
    image = photo(600, 400)
    pixels, crop = showo_transform(image, 64)
    assert crop == {"resized": [96, 64], "left": 16, "top": 0, "size": 64}
    resized = np.asarray(image.resize((96, 64), Image.Resampling.BICUBIC), dtype=np.float32)
    expected = (resized[:, 16:80] / 255.0 - 0.5) / 0.5
    assert pixels.shape == (3, 64, 64) and pixels.dtype == torch.float32
    assert np.allclose(pixels.permute(1, 2, 0).numpy(), expected, atol=1e-6)


def test_portrait_crop_offsets_follow_torchvision_rounding():
    _, crop = showo_transform(photo(300, 451), 64)
    # long side int(64 * 451 / 300) = 96, top = round((96 - 64) / 2) = 16
    assert crop == {"resized": [64, 96], "left": 0, "top": 16, "size": 64}
    _, crop = showo_transform(photo(427, 640), 256)
    assert crop == {"resized": [256, 383], "left": 0, "top": 64, "size": 256}


def test_exact_size_is_a_pure_centre_crop_with_exact_endpoints():
    array = np.zeros((64, 80, 3), dtype=np.uint8)
    array[:, :, 1] = 255
    array[10, 8] = [0, 0, 255]
    pixels, crop = showo_transform(Image.fromarray(array), 64)
    assert crop["resized"] == [80, 64] and crop["left"] == 8
    assert pixels[0].eq(-1).all()
    assert pixels[1, 10, 0] == -1 and pixels[1].sum() == 64 * 64 - 2
    assert pixels[2, 10, 0] == 1 and pixels[2].sum() == -(64 * 64) + 2


def test_grayscale_and_alpha_become_three_channels_and_round_trip_to_pil():
    for mode in ("L", "RGBA"):
        pixels, _ = showo_transform(photo(70, 64, mode=mode), 64)
        assert pixels.shape == (3, 64, 64)
        assert pixels.min() >= -1 and pixels.max() <= 1
    image = photo(64, 64)
    assert np.array_equal(np.asarray(to_image(showo_transform(image, 64)[0])), np.asarray(image))


@pytest.mark.parametrize(
    "bad, resolution, cause", [("x.png", 64, "needs a PIL image"), (None, 64, "needs a PIL image")]
)
def test_bad_image_inputs(bad, resolution, cause):
    with pytest.raises(ShowoError, match=cause):
        showo_transform(bad, resolution)


@pytest.mark.parametrize("resolution", [0, -4, 2.5])
def test_bad_resolution(resolution):
    with pytest.raises(ShowoError, match="resolution must be a positive integer"):
        showo_transform(photo(8, 8), resolution)
