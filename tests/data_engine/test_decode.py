"""Safe decoding: each bad input gets its reason, each awkward valid input becomes the right RGB image."""

import io

import numpy as np
import pytest
from PIL import Image

from data_engine.decode import Reject, decode_image, safe_member_name, to_rgb
from tests.data_engine import corpus


@pytest.mark.parametrize(
    "name",
    [
        n
        for n, (_, _, reason) in corpus.corpus().items()
        if reason not in (None, "missing_caption", "caption_too_long", "duplicate")
    ],
)
def test_bad_files_are_rejected_with_their_reason(name):
    data, _, reason = corpus.corpus()[name]
    with pytest.raises(Reject) as err:
        decode_image(data, min_size=8)
    assert err.value.reason == reason


def test_decompression_bomb_warning_zone_is_an_error_too():
    # Pillow only warns between MAX_IMAGE_PIXELS and twice that; we still refuse.
    side = int((Image.MAX_IMAGE_PIXELS * 1.5) ** 0.5)
    with pytest.raises(Reject) as err:
        decode_image(corpus.bomb_png(side, side))
    assert err.value.reason == "decompression_bomb"
    with pytest.raises(Reject):
        decode_image(corpus.png_bytes(Image.new("RGB", (100, 100))), max_pixels=5000)


def test_cmyk_becomes_rgb_red():
    image = decode_image(corpus.cmyk_jpeg())
    assert image.mode == "RGB"
    r, g, b = np.asarray(image, dtype=float).reshape(-1, 3).mean(0)
    assert r > 200 and g < 60 and b < 60


def test_sixteen_bit_grey_is_rescaled_not_clipped():
    image = decode_image(corpus.sixteen_bit_png())
    array = np.asarray(image)
    assert image.mode == "RGB"
    assert (array[:, :32] == 255).all()
    assert (array[:, 32:] == 128).all()  # 32896 / 257; clipping would give 255


def test_exif_orientation_is_applied():
    image = decode_image(corpus.exif_rotated_jpeg())
    assert image.size == (64, 96)
    array = np.asarray(image, dtype=float)
    top, bottom = array[:40].reshape(-1, 3).mean(0), array[56:].reshape(-1, 3).mean(0)
    assert top[0] > 200 and top[2] < 60  # red on top after rotating clockwise
    assert bottom[2] > 200 and bottom[0] < 60


def test_transparency_is_composited_on_white():
    image = decode_image(corpus.palette_png_with_transparency())
    array = np.asarray(image)
    assert (array[:, 40] == 255).all()  # transparent index -> white, not black
    assert tuple(array[10, 10]) == (255, 0, 0)


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA", "1", "I", "F", "YCbCr"])
def test_every_mode_converts_to_rgb(mode):
    image = Image.new(mode, (4, 4))
    assert to_rgb(image).mode == "RGB"


def test_la_alpha_zero_is_white():
    image = Image.new("LA", (4, 4), (0, 0))
    assert (np.asarray(to_rgb(image)) == 255).all()


def test_valid_jpeg_matches_plain_pillow():
    data = corpus.jpeg_bytes(corpus.gradient())
    reference = Image.open(io.BytesIO(data)).convert("RGB")
    assert np.array_equal(np.asarray(decode_image(data)), np.asarray(reference))


@pytest.mark.parametrize(
    "name, safe",
    [
        ("a/b.jpg", "a/b.jpg"),
        ("./a/b.jpg", "a/b.jpg"),
        ("a/../b.jpg", "b.jpg"),
        ("../b.jpg", None),
        ("a/../../b.jpg", None),
        ("/etc/passwd", None),
        ("C:/x.jpg", None),
        ("a\\..\\b.jpg", None),
        ("", None),
        ("..", None),
    ],
)
def test_member_names(name, safe):
    assert safe_member_name(name) == safe


def test_unexpected_errors_become_recorded_rejects():
    from data_engine.prepare import PrepareOptions, prepare
    from data_engine.sources import RawSample

    odd = RawSample(0, "odd", "image_text", images=[object()], caption="x")
    out = prepare(odd, 0, PrepareOptions(resolution=64))
    assert out.reject[0] == "unexpected_error" and "AttributeError" in out.reject[1]
    assert out.pixels is None
