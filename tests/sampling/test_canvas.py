"""Inpainting keeps every unmasked code; extrapolation grows the canvas in each direction; bad input errors."""

import pytest
import torch
from PIL import Image

from showo.errors import ShowoError
from showo.sampling import canvas


def _codes(model, shape, seed=0):
    return torch.randint(0, model.vocab.codebook_size, shape, generator=torch.Generator().manual_seed(seed))


def test_inpainting_leaves_every_unmasked_code_unchanged(small_showo):
    model, prompter = small_showo, small_showo.prompter()
    n = prompter.num_image_tokens
    for seed in range(3):
        codes = _codes(model, (2, n), seed)
        mask = torch.rand(2, n, generator=torch.Generator().manual_seed(seed)) < 0.4
        mask[:, 0] = True
        out = canvas.inpaint(
            model,
            prompter,
            ["a red circle", "a blue star"],
            codes,
            mask,
            steps=5,
            guidance=1.75,
            generator=torch.Generator().manual_seed(seed),
        )
        assert torch.equal(out[~mask], codes[~mask])
        assert out.shape == codes.shape and int(out.max()) < model.vocab.codebook_size


def test_inpainting_rejects_a_mask_of_the_wrong_size(small_showo):
    prompter = small_showo.prompter()
    with pytest.raises(ShowoError, match="mask"):
        canvas.inpaint(
            small_showo, prompter, ["x"], _codes(small_showo, (1, 16)), torch.ones(1, 9, dtype=torch.bool)
        )


def test_mask_picture_becomes_a_token_mask_by_patch_majority():
    picture = Image.new("L", (80, 64), 0)
    picture.paste(255, (0, 0, 40, 64))  # left half of the 80x64 picture; centre crop keeps x in [8, 72)
    tokens = canvas.token_mask_from_image(picture, (80, 64), 64, (4, 4)).view(4, 4)
    # the crop maps x = 40 to 32 of 64: the left two token columns are white, the right two black
    assert tokens[:, :2].all() and not tokens[:, 2:].any()
    with pytest.raises(ShowoError, match="mask size"):
        canvas.token_mask_from_image(picture, (64, 64), 64, (4, 4))


@pytest.mark.parametrize("direction", canvas.DIRECTIONS)
def test_extrapolation_grows_the_canvas_and_keeps_the_old_one(small_showo, direction):
    model, prompter = small_showo, small_showo.prompter()  # a 4x4 model grid: each call adds 2 + offset lines
    old = _codes(model, (2, 4, 4))
    kwargs = dict(steps=4, guidance=1.0, generator=torch.Generator().manual_seed(0))
    out = canvas.extrapolate(model, prompter, ["a", "b"], old, direction, **kwargs)
    expected_shape = {"left": (2, 4, 6), "right": (2, 4, 6), "up": (2, 6, 4), "down": (2, 6, 4)}[direction]
    assert out.shape == expected_shape
    where = {
        "left": (slice(None), slice(2, 6)),
        "right": (slice(None), slice(0, 4)),
        "up": (slice(2, 6), slice(None)),
        "down": (slice(0, 4), slice(None)),
    }[direction]
    assert torch.equal(out[:, where[0], where[1]], old)
    assert int(out.min()) >= 0 and int(out.max()) < model.vocab.codebook_size


def test_extrapolation_composes_across_axes_with_an_offset(small_showo):
    model, prompter = small_showo, small_showo.prompter()
    old = _codes(model, (1, 4, 4), seed=1)
    kwargs = dict(steps=3, generator=torch.Generator().manual_seed(0))
    wide = canvas.extrapolate(model, prompter, ["a"], old, "right", offset=1, **kwargs)
    assert wide.shape == (1, 4, 7)
    tall = canvas.extrapolate(
        model, prompter, ["a"], wide, "down", **kwargs
    )  # 7 wide: two overlapping windows
    assert tall.shape == (1, 6, 7) and torch.equal(tall[:, :4], wide)


def test_extrapolation_rejects_bad_directions_and_offsets(small_showo):
    prompter, old = small_showo.prompter(), _codes(small_showo, (1, 4, 4))
    with pytest.raises(ShowoError, match="unknown direction"):
        canvas.extrapolate(small_showo, prompter, ["a"], old, "sideways")
    with pytest.raises(ShowoError, match="offset"):
        canvas.extrapolate(small_showo, prompter, ["a"], old, "left", offset=2)
