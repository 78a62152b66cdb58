"""Training-time masking: schedules, exactly k masked positions, at least one, generator-driven.

The official rule: docs/official-differences.md#masking.
"""

import math

import pytest
import torch

from showo.errors import ShowoError
from showo.masking import mask_image_tokens, mask_ratio, num_masked


def test_schedules_at_known_points():
    t = torch.tensor([0.0, 0.5, 1.0])
    assert torch.allclose(mask_ratio(t, "cosine"), torch.tensor([1.0, math.cos(math.pi / 4), 0.0]), atol=1e-6)
    assert torch.allclose(mask_ratio(t, "linear"), torch.tensor([1.0, 0.5, 1e-6]))
    assert torch.allclose(mask_ratio(t, "pow2"), torch.tensor([1.0, 0.75, 0.0]))
    assert torch.allclose(mask_ratio(t, "pow3"), torch.tensor([1.0, 0.875, 0.0]))
    sig = mask_ratio(t, "sigmoid")
    assert torch.allclose(sig, torch.tensor([1.0, 0.5, 1e-9]), atol=1e-6)
    # Mean cosine mask rate is 2/pi.
    u = torch.rand(200_000, generator=torch.Generator().manual_seed(0))
    assert abs(mask_ratio(u).mean().item() - 2 / math.pi) < 3e-3
    with pytest.raises(ShowoError):
        mask_ratio(t, "exp")


def test_k_is_rounded_and_at_least_one():
    t = torch.tensor([0.0, 0.5, 0.999999, 1.0])
    assert num_masked(t, 256).tolist() == [256, round(256 * math.cos(math.pi / 4)), 1, 1]
    assert num_masked(torch.tensor([1.0]), 256, min_mask_rate=0.25).tolist() == [64]


def test_exactly_k_positions_and_labels():
    n, b = 64, 300
    ids = 1000 + torch.randint(0, 500, (b, n), generator=torch.Generator().manual_seed(3))
    masked, labels = mask_image_tokens(ids, 9999, "cosine", torch.Generator().manual_seed(7))
    # Recompute the official draws: t, then the noise whose argsort picks the positions.
    gen = torch.Generator().manual_seed(7)
    t = torch.rand(b, generator=gen)
    k = num_masked(t, n)
    noise = torch.rand(b, n, generator=gen)
    expect = noise.argsort(-1) < k[:, None]
    is_masked = masked == 9999
    assert torch.equal(is_masked, expect)
    assert torch.equal(is_masked.sum(-1), k)
    assert torch.equal(labels[is_masked], ids[is_masked])
    assert bool((labels[~is_masked] == -100).all()) and torch.equal(masked[~is_masked], ids[~is_masked])
    # Positions are spread uniformly (no bias to the start of the row).
    freq = is_masked.float().mean(0)
    assert freq.max() - freq.min() < 0.25
    again = mask_image_tokens(ids, 9999, "cosine", torch.Generator().manual_seed(7))
    assert torch.equal(again[0], masked)
