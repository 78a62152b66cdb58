"""`ImageTokenizer` (MAGVIT-v2 with LFQ) and `load_image_tokenizer` for our and official checkpoints."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from showo.errors import ShowoError
from showo.safeio import load_weights_only, read_json_object, read_safetensors
from showo.tokenizer.config import MODEL_TYPE, TokenizerConfig
from showo.tokenizer.lfq import LFQuantizer, code_bits, power_values
from showo.tokenizer.modules import Decoder, Encoder

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
OFFICIAL_NAMES = ("pytorch_model.safetensors", "pytorch_model.bin")
PIXEL_TOLERANCE = 1e-3


@dataclass
class TokenizerOutput:
    """Training forward: reconstruction, code ids [B,h,w] and the LFQ loss terms (unscaled)."""

    reconstruction: torch.Tensor
    indices: torch.Tensor
    commit_loss: torch.Tensor
    entropy_loss: torch.Tensor


class ImageTokenizer(nn.Module):
    """Pixels in [-1,1] <-> raster code ids in [0, 2^z). State-dict keys equal `showlab/magvitv2`'s."""

    def __init__(self, config: TokenizerConfig) -> None:
        super().__init__()
        config.check("tokenizer config")
        self.config = config
        self.encoder = Encoder(
            config.ch,
            config.ch_mult,
            config.num_res_blocks,
            config.z_channels,
            config.in_channels,
            config.dropout,
            config.norm_groups,
        )
        self.decoder = Decoder(
            config.ch,
            config.decoder_ch_mult,
            config.decoder_num_res_blocks,
            config.z_channels,
            config.out_channels,
            config.dropout,
            config.norm_groups,
        )
        self.quantize = LFQuantizer(config.z_channels)

    @property
    def codebook_size(self) -> int:
        return self.config.codebook_size

    @property
    def downsample_factor(self) -> int:
        return self.config.downsample_factor

    def forward(
        self, pixels: torch.Tensor, commit_beta: float = 0.25, entropy: str = "factorized"
    ) -> TokenizerOutput:
        """Encode, quantize (straight-through) and decode; the training path."""
        q = self.quantize(self.encoder(pixels), commit_beta, entropy)
        return TokenizerOutput(self.decoder(q.quantized), q.indices, q.commit_loss, q.entropy_loss)

    def check_pixels(self, pixels: torch.Tensor) -> None:
        """Raise ShowoError unless `pixels` is a float [B,C,H,W] batch this tokenizer can encode."""
        if not isinstance(pixels, torch.Tensor) or not pixels.is_floating_point():
            raise ShowoError("tokenizer input must be a float tensor of pixels in [-1, 1]")
        if pixels.dim() != 4:
            raise ShowoError(f"tokenizer input must be [B, C, H, W], got shape {tuple(pixels.shape)}")
        if pixels.shape[1] != self.config.in_channels:
            raise ShowoError(
                f"tokenizer input has {pixels.shape[1]} channels, expected {self.config.in_channels} (RGB)"
            )
        f = self.downsample_factor
        if pixels.shape[2] % f or pixels.shape[3] % f or pixels.shape[2] == 0 or pixels.shape[3] == 0:
            raise ShowoError(
                f"tokenizer input size {pixels.shape[2]}x{pixels.shape[3]} is not divisible by the downsample factor {f}"
            )
        if pixels.device.type != "meta" and pixels.numel():
            lo, hi = pixels.min().item(), pixels.max().item()
            if (
                not (math.isfinite(lo) and math.isfinite(hi))
                or lo < -1 - PIXEL_TOLERANCE
                or hi > 1 + PIXEL_TOLERANCE
            ):
                raise ShowoError(
                    f"tokenizer input values must lie in [-1, 1], got range [{lo:.3g}, {hi:.3g}]"
                )

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """Pixels [B,3,H,W] in [-1,1] -> LongTensor [B, (H/f)*(W/f)] of code ids in raster order."""
        self.check_pixels(pixels)
        param = next(self.parameters())
        with torch.inference_mode():
            z = self.encoder(pixels.to(device=param.device, dtype=param.dtype))
            ids = self.quantize.indices(z).flatten(1)
        return ids.clone()

    def decode(self, codes: torch.Tensor, grid: tuple[int, int] | None = None) -> torch.Tensor:
        """Codes [B,n] -> pixels [B,3,h*f,w*f]; `grid=(h,w)` defaults to a square grid."""
        if not isinstance(codes, torch.Tensor) or codes.dtype.is_floating_point or codes.dim() != 2:
            raise ShowoError("tokenizer codes must be an integer tensor [B, n]")
        n = codes.shape[1]
        if grid is None:
            side = math.isqrt(n)
            if side * side != n:
                raise ShowoError(f"{n} codes per image are not a square grid: pass grid=(h, w)")
            grid = (side, side)
        h, w = int(grid[0]), int(grid[1])
        if h * w != n:
            raise ShowoError(f"grid {h}x{w} does not hold the {n} codes per image")
        if (
            codes.numel()
            and codes.device.type != "meta"
            and (codes.min().item() < 0 or codes.max().item() >= self.codebook_size)
        ):
            raise ShowoError(
                f"tokenizer codes must lie in [0, {self.codebook_size}), got [{codes.min()}, {codes.max()}]"
            )
        with torch.inference_mode():
            ids = codes.to(self.quantize.embedding.device).long().view(-1, h, w)
            pixels = self.decoder(self.quantize.bits(ids).to(next(self.parameters()).dtype))
        return pixels.clone()

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write `config.json` + `model.safetensors` (fp32, official key names)."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        save_file(state, str(out / WEIGHTS_NAME))
        (out / CONFIG_NAME).write_text(json.dumps(self.config.to_dict(), indent=2) + "\n")
        return out

    def identity(self) -> str:
        """A stable hash of the config and the weights, recorded next to the codes it produced."""
        digest = hashlib.sha256(json.dumps(self.config.to_dict(), sort_keys=True).encode())
        for key, value in sorted(self.state_dict().items()):
            digest.update(key.encode())
            digest.update(str(tuple(value.shape)).encode())
            digest.update(value.detach().float().cpu().contiguous().numpy().tobytes())
        return f"{MODEL_TYPE}-{digest.hexdigest()[:16]}"


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Read a safetensors or torch (weights_only) file; unwrap a `state_dict` / `model` entry if present."""
    if path.suffix == ".safetensors":
        return read_safetensors(path, "tokenizer checkpoint")
    state = load_weights_only(path, "tokenizer checkpoint")
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ShowoError(f"tokenizer checkpoint {path} does not hold a state dict of tensors")
    return state


def _load_weights(config: TokenizerConfig, state: dict[str, torch.Tensor], source: Path) -> ImageTokenizer:
    """Strictly match keys and shapes, then assign the tensors into a model built on the meta device."""
    with torch.device("meta"):
        model = ImageTokenizer(config)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(
                f"missing keys ({len(missing)}): {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}"
            )
        if unexpected:
            parts.append(
                f"unexpected keys ({len(unexpected)}): {', '.join(unexpected[:5])}{' ...' if len(unexpected) > 5 else ''}"
            )
        raise ShowoError(f"tokenizer checkpoint {source} does not match the architecture: {'; '.join(parts)}")
    for key, value in expected.items():
        if tuple(state[key].shape) != tuple(value.shape):
            raise ShowoError(
                f"tokenizer checkpoint {source}: {key} has shape {tuple(state[key].shape)}, expected {tuple(value.shape)}"
            )
    state = {k: (v.float() if v.is_floating_point() else v.long()) for k, v in state.items()}
    if not torch.equal(state["quantize.embedding"], code_bits(config.z_channels)) or not torch.equal(
        state["quantize.power_vals"], power_values(config.z_channels)
    ):
        raise ShowoError(f"tokenizer checkpoint {source}: the LFQ buffers differ from the sign-bit codebook")
    model.load_state_dict(state, strict=True, assign=True)
    return model.eval()


def load_image_tokenizer(path: str | Path, config: TokenizerConfig | None = None) -> ImageTokenizer:
    """Load our directory (config.json + model.safetensors) or an official MAGVIT-v2 checkpoint.

    Official: a directory holding `pytorch_model.safetensors` or `pytorch_model.bin`, or such a file
    (`.safetensors`, `.bin`, `.pth`, `.pt`, `.ckpt`; a `state_dict` / `model` entry is unwrapped). Its
    architecture is the fixed official default unless `config` names another (a raw checkpoint of ours).
    """
    path = Path(path)
    official = config or TokenizerConfig()
    if not path.exists():
        raise ShowoError(f"image tokenizer not found: {path}")
    if path.is_dir():
        ours = path / WEIGHTS_NAME
        if ours.is_file():
            config_path = path / CONFIG_NAME
            if not config_path.is_file():
                raise ShowoError(f"image tokenizer {path} has {WEIGHTS_NAME} but no {CONFIG_NAME}")
            data = read_json_object(config_path, "image tokenizer config")
            if data.get("model_type") != MODEL_TYPE:
                raise ShowoError(
                    f"{config_path} is not a {MODEL_TYPE} config (model_type={data.get('model_type')!r})"
                )
            return _load_weights(TokenizerConfig.from_dict(data), _read_state_dict(ours), ours)
        for name in OFFICIAL_NAMES:
            if (path / name).is_file():
                return _load_weights(official, _read_state_dict(path / name), path / name)
        raise ShowoError(
            f"image tokenizer {path} holds neither {WEIGHTS_NAME} nor {' / '.join(OFFICIAL_NAMES)}"
        )
    if path.suffix not in {".safetensors", ".bin", ".pth", ".pt", ".ckpt"}:
        raise ShowoError(f"image tokenizer file {path} is not a .safetensors/.bin/.pth/.pt/.ckpt checkpoint")
    return _load_weights(official, _read_state_dict(path), path)
