"""The latent head: patchify is torch's `unfold` (patches of (C, p, p) in raster order) and unpatchify its
inverse; embeddings add one timestep vector to every position of a row."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from showo.errors import ShowoError
from showo.latents import LatentHead


@pytest.mark.parametrize(("channels", "patch", "h", "w"), [(4, 2, 8, 6), (8, 1, 3, 5), (3, 4, 8, 8)])
def test_patchify_is_unfold_and_unpatchify_inverts_it(channels, patch, h, w):
    head = LatentHead(16, channels, patch)
    latents = torch.randn(2, channels, h, w, generator=torch.Generator().manual_seed(0))
    patches = head.patchify(latents)
    reference = F.unfold(latents, kernel_size=patch, stride=patch).transpose(1, 2)
    assert patches.shape == (2, (h // patch) * (w // patch), channels * patch * patch)
    assert torch.equal(patches, reference)
    assert torch.equal(head.unpatchify(patches, (h // patch, w // patch)), latents)


def test_embed_adds_one_timestep_vector_per_row_and_output_starts_at_zero():
    torch.manual_seed(0)
    head = LatentHead(16, 4, 2)
    patches = torch.randn(2, 6, 16)
    t = torch.tensor([0.0, 500.0])
    embeds = head.embed(patches, t)
    plain = head.patch_embed(patches)
    shift = embeds - plain
    # the same vector at every position of a row, up to float32 rounding of (patch + vector) - patch
    assert torch.allclose(shift, shift[:, :1].expand_as(shift), atol=1e-6)
    assert not torch.allclose(shift[0, 0], shift[1, 0])  # another timestep, another vector
    assert torch.equal(head.output(torch.randn(5, 16)), torch.zeros(5, 16))


def test_shapes_that_do_not_fit_are_one_line_errors():
    head = LatentHead(16, 4, 2)
    with pytest.raises(ShowoError, match="3 channels"):
        head.patchify(torch.zeros(1, 3, 8, 8))
    with pytest.raises(ShowoError, match="not divisible"):
        head.patchify(torch.zeros(1, 4, 7, 8))
    with pytest.raises(ShowoError, match="do not fill"):
        head.unpatchify(torch.zeros(1, 5, 16), (2, 2))
