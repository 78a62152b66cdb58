"""Inpainting and extrapolation with the t2i model, no fine-tuning: MaskGIT on a partly known grid.

Extrapolation grows a code canvas by e = g/2 + offset rows or columns (g = the model's square grid side)
per call. Each window the model sees is g x g: g - e known lines from the canvas edge plus e new ones;
along the other axis a canvas longer than g is covered by overlapping g-long windows, so the directions
compose in any order (the official script only chains one axis, and its 'down' branch pastes the wrong
part of the canvas; neither limitation is copied). The canvas decodes as a non-square code grid.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from PIL import Image

from showo.errors import ShowoError
from showo.sampling import maskgit

DIRECTIONS = ("left", "right", "up", "down")


def token_mask_from_image(
    mask: Image.Image, image_size: tuple[int, int], resolution: int, grid: tuple[int, int]
):
    """A mask picture (white = repaint) -> bool [h*w] on the code grid, raster order.

    The mask goes through the image's own transform (short-side resize, centre crop), then each token
    is repainted when at least half of its pixel patch is white (area average >= 0.5).
    """
    from showo.tokenizer.transform import showo_transform

    if mask.size != tuple(image_size):
        raise ShowoError(
            f"mask size {mask.size[0]}x{mask.size[1]} differs from image size {image_size[0]}x{image_size[1]}"
        )
    pixels, _ = showo_transform(mask.convert("RGB"), resolution)
    white = ((pixels[:1] + 1.0) / 2.0).clamp(0.0, 1.0).unsqueeze(0)
    return (F.adaptive_avg_pool2d(white, grid) >= 0.5).flatten()


def inpaint(
    model: torch.nn.Module,
    prompter,
    prompts: Sequence[str],
    codes: torch.Tensor,
    token_mask: torch.Tensor,
    **generate_kwargs,
) -> torch.Tensor:
    """Regenerate the codes where `token_mask` is True; every other code comes back unchanged.

    codes: raw codes [B,N] (or [N], broadcast over the prompts); token_mask: bool of the same shape.
    """
    model.objective.check_sampler("maskgit")  # editing known codes in place is MaskGIT's (MTP checkpoints)
    batch, num_tokens = len(prompts), prompter.num_image_tokens
    codes, token_mask = codes.reshape(-1, codes.shape[-1]), token_mask.reshape(-1, token_mask.shape[-1])
    if codes.shape[-1] != num_tokens or token_mask.shape[-1] != num_tokens:
        raise ShowoError(
            f"inpainting needs {num_tokens} codes and a {num_tokens}-token mask, "
            f"got {codes.shape[-1]} codes and a {token_mask.shape[-1]}-token mask"
        )
    if {codes.shape[0], token_mask.shape[0]} - {1, batch}:
        raise ShowoError(
            f"{batch} prompts for {codes.shape[0]} code rows and {token_mask.shape[0]} mask rows"
        )
    codes, token_mask = codes.expand(batch, -1), token_mask.bool().expand(batch, -1).to(codes.device)
    vocab = model.vocab
    image_ids = torch.where(token_mask, torch.full_like(codes, vocab.mask_id), codes + vocab.image_offset)
    return maskgit.generate(model, prompter, prompts, image_ids=image_ids, **generate_kwargs)


def model_grid_side(prompter) -> int:
    side = math.isqrt(prompter.num_image_tokens)
    if side * side != prompter.num_image_tokens:
        raise ShowoError(f"extrapolation needs a square model grid, got {prompter.num_image_tokens} tokens")
    return side


def _windows(length: int, side: int) -> list[int]:
    """Starts of g-long windows covering [0, length): 0, g, 2g, ..., the last one flush with the end."""
    starts = list(range(0, length - side + 1, side))
    if starts[-1] + side < length:
        starts.append(length - side)
    return starts


def extrapolate(
    model: torch.nn.Module,
    prompter,
    prompts: Sequence[str],
    canvas: torch.Tensor,
    direction: str,
    offset: int = 0,
    **generate_kwargs,
) -> torch.Tensor:
    """Grow a raw-code canvas [B,h,w] by g/2 + offset lines towards `direction`; returns the new canvas.

    The old canvas is kept unchanged at its place inside the new one.
    """
    if direction not in DIRECTIONS:
        raise ShowoError(f"unknown direction {direction!r} (expected one of {', '.join(DIRECTIONS)})")
    side = model_grid_side(prompter)
    grow = side // 2 + offset
    batch, height, width = canvas.shape
    if batch != len(prompts):
        raise ShowoError(f"{len(prompts)} prompts for a canvas batch of {batch}")
    if not 0 < grow < side:
        raise ShowoError(
            f"offset {offset} must keep g/2 + offset inside (0, {side}) for a {side}x{side} grid"
        )
    if height < side or width < side:
        raise ShowoError(f"canvas {height}x{width} is smaller than the model grid {side}x{side}")

    horizontal = direction in ("left", "right")
    new_h, new_w = (height, width + grow) if horizontal else (height + grow, width)
    out = torch.zeros(batch, new_h, new_w, dtype=torch.long, device=canvas.device)
    known = torch.zeros(batch, new_h, new_w, dtype=torch.bool, device=canvas.device)
    top = grow if direction == "up" else 0
    left = grow if direction == "left" else 0
    out[:, top : top + height, left : left + width] = canvas
    known[:, top : top + height, left : left + width] = True

    edge = {"left": 0, "right": new_w - side, "up": 0, "down": new_h - side}[direction]
    for start in _windows(new_h if horizontal else new_w, side):
        rows = slice(start, start + side) if horizontal else slice(edge, edge + side)
        cols = slice(edge, edge + side) if horizontal else slice(start, start + side)
        window, window_known = out[:, rows, cols], known[:, rows, cols]
        codes = inpaint(
            model,
            prompter,
            prompts,
            window.reshape(batch, -1),
            ~window_known.reshape(batch, -1),
            **generate_kwargs,
        )
        out[:, rows, cols] = codes.view(batch, side, side)
        known[:, rows, cols] = True
    return out
