"""Convolutional encoder and decoder of MAGVIT-v2 (the taming-transformers VQGAN body).

Attribute names and nesting mirror `showlab/magvitv2` exactly (`down.{i}.block.{j}.norm1`,
`mid.attn_1.q`, `up.{i}.upsample.conv`, ...), so an official state dict loads with strict key
matching at the official sizes and our own checkpoints share that layout at every size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def normalize(channels: int, groups: int) -> nn.GroupNorm:
    """GroupNorm with the official eps (1e-6); `groups` is 32 at the official size."""
    return nn.GroupNorm(num_groups=groups, num_channels=channels, eps=1e-6, affine=True)


class ResnetBlock(nn.Module):
    """GN, swish, conv3, GN, swish, dropout, conv3, plus a 1x1 `nin_shortcut` when channels change."""

    def __init__(self, in_channels: int, out_channels: int, dropout: float, groups: int) -> None:
        super().__init__()
        self.norm1 = normalize(in_channels, groups)
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)
        self.norm2 = normalize(out_channels, groups)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1)
        self.nin_shortcut = (
            nn.Conv2d(in_channels, out_channels, kernel_size=1) if in_channels != out_channels else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        if self.nin_shortcut is not None:
            x = self.nin_shortcut(x)
        return x + h


class AttnBlock(nn.Module):
    """Single-head self-attention over the h*w positions with 1x1-conv projections (scale c^-0.5)."""

    def __init__(self, channels: int, groups: int) -> None:
        super().__init__()
        self.norm = normalize(channels, groups)
        self.q = nn.Conv2d(channels, channels, kernel_size=1)
        self.k = nn.Conv2d(channels, channels, kernel_size=1)
        self.v = nn.Conv2d(channels, channels, kernel_size=1)
        self.proj_out = nn.Conv2d(channels, channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        hn = self.norm(x)
        q, k, v = (proj(hn).reshape(b, 1, c, h * w).transpose(2, 3) for proj in (self.q, self.k, self.v))
        out = F.scaled_dot_product_attention(q, k, v)
        return x + self.proj_out(out.transpose(2, 3).reshape(b, c, h, w))


class Downsample(nn.Module):
    """Pad right/bottom by one, then a stride-2 3x3 conv (the official asymmetric padding)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    """Nearest-neighbour x2 followed by a 3x3 conv."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class _Mid(nn.Module):
    """ResBlock, attention, ResBlock at the lowest resolution (keys `mid.block_1/attn_1/block_2`)."""

    def __init__(self, channels: int, dropout: float, groups: int) -> None:
        super().__init__()
        self.block_1 = ResnetBlock(channels, channels, dropout, groups)
        self.attn_1 = AttnBlock(channels, groups)
        self.block_2 = ResnetBlock(channels, channels, dropout, groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block_2(self.attn_1(self.block_1(x)))


class _Level(nn.Module):
    """One resolution level: `block` (ResBlocks) and an optional `downsample` / `upsample`."""

    def __init__(
        self, channels_in: int, channels_out: int, num_blocks: int, dropout: float, groups: int
    ) -> None:
        super().__init__()
        self.block = nn.ModuleList(
            ResnetBlock(channels_in if i == 0 else channels_out, channels_out, dropout, groups)
            for i in range(num_blocks)
        )

    def run_blocks(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.block:
            x = block(x)
        return x


class Encoder(nn.Module):
    """Pixels [B,3,H,W] -> continuous latents [B,z,H/f,W/f], f = 2^(levels-1)."""

    def __init__(
        self,
        ch: int,
        ch_mult: list[int],
        num_res_blocks: list[int],
        z_channels: int,
        in_channels: int,
        dropout: float,
        groups: int,
    ) -> None:
        super().__init__()
        self.conv_in = nn.Conv2d(in_channels, ch, kernel_size=3, padding=1)
        self.down = nn.ModuleList()
        block_in = ch
        for i, (mult, n) in enumerate(zip(ch_mult, num_res_blocks)):
            level = _Level(block_in, ch * mult, n, dropout, groups)
            block_in = ch * mult
            if i != len(ch_mult) - 1:
                level.downsample = Downsample(block_in)
            self.down.append(level)
        self.mid = _Mid(block_in, dropout, groups)
        self.norm_out = normalize(block_in, groups)
        self.conv_out = nn.Conv2d(block_in, z_channels, kernel_size=3, padding=1)
        self.quant_conv = nn.Conv2d(z_channels, z_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for level in self.down:
            h = level.run_blocks(h)
            if hasattr(level, "downsample"):
                h = level.downsample(h)
        h = self.mid(h)
        return self.quant_conv(self.conv_out(F.silu(self.norm_out(h))))


class Decoder(nn.Module):
    """Quantized latents [B,z,h,w] -> pixels [B,3,h*f,w*f] in [-1,1] space (not clamped)."""

    def __init__(
        self,
        ch: int,
        ch_mult: list[int],
        num_res_blocks: list[int],
        z_channels: int,
        out_channels: int,
        dropout: float,
        groups: int,
    ) -> None:
        super().__init__()
        self.post_quant_conv = nn.Conv2d(z_channels, z_channels, kernel_size=1)
        block_in = ch * ch_mult[-1]
        self.conv_in = nn.Conv2d(z_channels, block_in, kernel_size=3, padding=1)
        self.mid = _Mid(block_in, dropout, groups)
        levels: list[_Level] = []
        for i in reversed(range(len(ch_mult))):
            level = _Level(block_in, ch * ch_mult[i], num_res_blocks[i], dropout, groups)
            block_in = ch * ch_mult[i]
            if i != 0:
                level.upsample = Upsample(block_in)
            levels.insert(0, level)
        self.up = nn.ModuleList(levels)
        self.norm_out = normalize(block_in, groups)
        self.conv_out = nn.Conv2d(block_in, out_channels, kernel_size=3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.mid(self.conv_in(self.post_quant_conv(z)))
        for level in reversed(self.up):
            h = level.run_blocks(h)
            if hasattr(level, "upsample"):
                h = level.upsample(h)
        return self.conv_out(F.silu(self.norm_out(h)))
