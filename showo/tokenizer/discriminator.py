"""Optional patch-GAN discriminator (pix2pix / taming style) with hinge losses.

MAGVIT-v2 trains with an adversarial term on top of reconstruction; here it is opt-in (`loss.gan > 0`)
and switches on after `loss.gan_start_step`, once reconstructions are reasonable, as in taming's VQGAN.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class PatchDiscriminator(nn.Module):
    """Stride-2 4x4 convs with GroupNorm and LeakyReLU, ending in one real/fake logit per patch."""

    def __init__(self, in_channels: int = 3, channels: int = 64, layers: int = 3) -> None:
        super().__init__()
        mods: list[nn.Module] = [nn.Conv2d(in_channels, channels, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
        width = channels
        for i in range(1, layers + 1):
            out = channels * min(2**i, 8)
            stride = 2 if i < layers else 1
            mods += [
                nn.Conv2d(width, out, 4, stride=stride, padding=1, bias=False),
                nn.GroupNorm(min(32, out // 4), out),
                nn.LeakyReLU(0.2),
            ]
            width = out
        mods.append(nn.Conv2d(width, 1, 4, stride=1, padding=1))
        self.net = nn.Sequential(*mods)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.net(pixels)


def adversarial_losses(
    discriminator: nn.Module, real: torch.Tensor, fake: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(generator's hinge loss, discriminator's hinge loss) of one step: the discriminator is frozen while
    the generator's term is computed and sees detached reconstructions for its own loss."""
    discriminator.requires_grad_(False)
    g_adv = hinge_g_loss(discriminator(fake))
    discriminator.requires_grad_(True)
    return g_adv, hinge_d_loss(discriminator(real), discriminator(fake.detach()))


def hinge_d_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    """Discriminator hinge loss: mean(relu(1 - D(x))) and mean(relu(1 + D(G(x)))), averaged."""
    return 0.5 * (F.relu(1.0 - logits_real).mean() + F.relu(1.0 + logits_fake).mean())


def hinge_g_loss(logits_fake: torch.Tensor) -> torch.Tensor:
    """Generator hinge loss: -mean(D(G(x)))."""
    return -logits_fake.mean()
