"""Tokenizer training data: the mixture stream, zoomed photo crops and the fixed evaluation sets."""

import numpy as np
import pytest
import torch
from PIL import Image

from showo.embedded import photos
from showo.errors import ShowoError
from showo.tokenizer.data import MixtureImages, fixed_sample, heldout_photos, random_photo_crop
from showo.tokenizer.transform import showo_transform, to_pixels


def test_zoom_one_crop_is_the_show_o_view_of_a_square_photo():
    rng = np.random.default_rng(0)
    image = Image.fromarray(np.random.default_rng(1).integers(0, 256, (256, 256, 3), dtype=np.uint8))
    expected = showo_transform(image, 64)[0]
    for _ in range(4):
        crop = to_pixels(random_photo_crop(image, 64, 64, rng, max_zoom=1.0))
        assert torch.equal(crop, expected) or torch.equal(crop, expected.flip(-1))


def test_zoomed_crops_cover_at_most_the_window_the_zoom_allows():
    image = Image.fromarray(np.zeros((400, 600, 3), dtype=np.uint8))
    rng = np.random.default_rng(0)
    for _ in range(20):
        assert random_photo_crop(image, 32, 64, rng).size == (32, 32)


def test_mixture_stream_is_seeded_and_cropped():
    stream = MixtureImages(64, {"photos": 1.0, "shapes": 1.0, "digits": 1.0}, seed=3, crop=32)
    first = [x for _, x in zip(range(6), iter(stream))]
    again = [
        x
        for _, x in zip(
            range(6), iter(MixtureImages(64, {"photos": 1, "shapes": 1, "digits": 1}, 3, crop=32))
        )
    ]
    assert all(x.shape == (3, 32, 32) and x.min() >= -1 and x.max() <= 1 for x in first)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    sample = fixed_sample(64, {"digits": 1.0}, seed=0, n=3)
    assert sample.shape == (3, 3, 64, 64) and torch.equal(
        sample, fixed_sample(64, {"digits": 1.0}, seed=0, n=3)
    )


def test_mixture_at_max_zoom_one_shows_photos_at_the_evaluation_scale():
    views = [showo_transform(image, 64)[0] for _, image in photos.photos("train")]
    views += [v.flip(-1) for v in views]
    stream = iter(MixtureImages(64, {"photos": 1.0}, seed=5, max_zoom=1.0))
    for _ in range(4):
        image = next(stream)
        assert any(torch.equal(image, v) for v in views)


def test_heldout_set_uses_only_heldout_photos():
    pixels, names = heldout_photos(64, crops_per_photo=1)
    heldout = photos.names("heldout")
    assert pixels.shape == (2 * len(heldout), 3, 64, 64)
    assert [n for n in names if "/" not in n] == list(heldout)
    assert not set(heldout) & set(photos.names("train"))


@pytest.mark.parametrize(
    "weights, crop, cause",
    [
        ({"faces": 1.0}, None, "unknown tokenizer data source"),
        ({"photos": 0.0}, None, "positive weight"),
        ({"photos": 1.0}, 128, "exceeds"),
    ],
)
def test_bad_mixtures(weights, crop, cause):
    with pytest.raises(ShowoError, match=cause):
        MixtureImages(64, weights, seed=0, crop=crop)
