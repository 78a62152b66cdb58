"""Step counts and temperatures against the official numbers (docs/official-differences.md#sampling)."""

import math

import pytest
import torch

from showo.errors import ShowoError
from showo.sampling.schedules import choice_temperature, mask_len, remaining_counts, remaining_masked

OFFICIAL_256_18 = [255, 252, 247, 240, 232, 221, 209, 196, 181, 164, 146, 127, 108, 87, 66, 44, 22, 1]


def test_cosine_counts_match_the_official_table():
    assert remaining_counts(256, 18, "cosine") == OFFICIAL_256_18


def test_1024_tokens_50_steps_ends_like_the_official_table():
    counts = remaining_counts(1024, 50, "cosine")
    assert counts[:2] == [1023, 1021] and counts[-3:] == [64, 32, 1]


def test_counts_fall_monotonically_for_every_schedule():
    for schedule in ("cosine", "linear", "pow2", "pow3", "sigmoid"):
        counts = remaining_counts(256, 12, schedule)
        assert counts[-1] == 1 and all(a >= b for a, b in zip(counts, counts[1:])), schedule


def test_mask_len_is_clamped_to_one_and_unknown_minus_one():
    unknown = torch.tensor([[256], [10], [1], [0]])
    out = mask_len(256, 0, 18, unknown, "cosine")
    assert out.squeeze(1).tolist() == [255, 9, 1, 1]
    assert remaining_masked(256, 17, 18) <= 0  # float32 cos(pi/2) < 0: the clamp to 1 is what leaves 1


def test_temperature_schedules():
    steps = 18
    maskgit = [choice_temperature(1.0, k, steps, "maskgit") for k in range(steps)]
    assert maskgit == pytest.approx([1 - (k + 1) / steps for k in range(steps)])
    official = [choice_temperature(1.0, k, steps, "official") for k in range(8)]
    # official: 0.944, 0.840, 0.700, 0.544, 0.393, 0.262, 0.160, 0.089
    assert official == pytest.approx([0.944, 0.840, 0.700, 0.544, 0.393, 0.262, 0.160, 0.089], abs=1e-3)
    assert choice_temperature(2.0, 3, 18, "official") == pytest.approx(
        2.0 * math.prod(1 - (j + 1) / 18 for j in range(4))
    )
    with pytest.raises(ShowoError):
        choice_temperature(1.0, 0, 18, "nope")
