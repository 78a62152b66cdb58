"""Tokenizer architecture (`TokenizerConfig`, official MAGVIT-v2 defaults) and the `kind: tokenizer` recipe.

The recipe reuses the Show-o recipe's run, optimizer and trainer sections, so cadences, precision and
strategies mean the same thing in both kinds of run.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar, Literal

from omegaconf import MISSING

from showo.errors import ShowoError
from showo.recipe.schema import OptimConfig, RunConfig, TrainerConfig

MODEL_TYPE = "showo-magvitv2-lfq"


MAX_LEVELS = 8
MAX_WIDTH = 8192
MAX_BLOCKS = 64
LIST_FIELDS = ("ch_mult", "num_res_blocks", "decoder_ch_mult", "decoder_num_res_blocks")


def _check_field(key: str, value: Any) -> None:
    """Types and sizes of one stored config field, bounded before any module is built."""
    if key == "dropout":
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise ShowoError(f"tokenizer config.dropout must be a number, got {str(value)[:40]!r}")
        return
    values = value if key in LIST_FIELDS else [value]
    if key in LIST_FIELDS and (not isinstance(value, list) or not 1 <= len(value) <= MAX_LEVELS):
        raise ShowoError(f"tokenizer config.{key} must be a list of 1..{MAX_LEVELS} integers")
    high = (
        MAX_BLOCKS
        if "blocks" in key
        else MAX_WIDTH
        if key in ("ch", "norm_groups", "ch_mult", "decoder_ch_mult")
        else 2**16
    )
    if any(type(v) is not int or not 0 <= v <= high for v in values):
        raise ShowoError(f"tokenizer config.{key} must hold integers in 0..{high}, got {str(value)[:60]!r}")


@dataclass
class TokenizerConfig:
    """Encoder/decoder widths and depths; the defaults build the official 95,387,004-parameter model."""

    ch: int = 128
    """Base channel count; level i has `ch * ch_mult[i]` channels."""
    ch_mult: list[int] = field(default_factory=lambda: [1, 2, 2, 4, 4])
    """Encoder channel multipliers, one per level; `len - 1` stride-2 downsamples."""
    num_res_blocks: list[int] = field(default_factory=lambda: [4, 3, 4, 3, 4])
    """Encoder ResBlocks per level."""
    decoder_ch_mult: list[int] = field(default_factory=lambda: [1, 1, 2, 2, 4])
    """Decoder channel multipliers (official decoder is narrower at high resolution than the encoder)."""
    decoder_num_res_blocks: list[int] = field(default_factory=lambda: [4, 4, 3, 4, 3])
    """Decoder ResBlocks per level."""
    z_channels: int = 13
    """Latent channels = LFQ bits: the codebook has 2^z_channels codes."""
    resolution: int = 256
    """Training resolution (informational: any size divisible by the downsample factor encodes)."""
    in_channels: int = 3
    out_channels: int = 3
    dropout: float = 0.0
    norm_groups: int = 32
    """GroupNorm groups (32 officially); lower it for tiny widths. Does not change any key or shape."""

    def __post_init__(self) -> None:
        self.ch_mult = list(self.ch_mult)
        self.num_res_blocks = list(self.num_res_blocks)
        self.decoder_ch_mult = list(self.decoder_ch_mult)
        self.decoder_num_res_blocks = list(self.decoder_num_res_blocks)

    def check(self, key: str) -> None:
        """Raise ShowoError naming the first inconsistent field as `<key>.<field>`."""
        if not 1 <= self.z_channels <= 16:
            raise ShowoError(
                f"{key}.z_channels must be in 1..16 (codes are stored as uint16), got {self.z_channels}"
            )
        if self.norm_groups <= 0 or self.ch <= 0:
            raise ShowoError(f"{key}.ch and {key}.norm_groups must be positive")
        widest = self.ch * max([*self.ch_mult, *self.decoder_ch_mult, 1])
        if widest > MAX_WIDTH:
            raise ShowoError(f"{key}: widest level ch*mult = {widest} exceeds {MAX_WIDTH}")
        if not self.ch_mult or len(self.num_res_blocks) != len(self.ch_mult):
            raise ShowoError(f"{key}.num_res_blocks must have one entry per {key}.ch_mult level")
        if len(self.decoder_ch_mult) != len(self.ch_mult):
            raise ShowoError(
                f"{key}.decoder_ch_mult must have as many levels as {key}.ch_mult (same downsampling)"
            )
        if len(self.decoder_num_res_blocks) != len(self.decoder_ch_mult):
            raise ShowoError(
                f"{key}.decoder_num_res_blocks must have one entry per {key}.decoder_ch_mult level"
            )
        if min(*self.num_res_blocks, *self.decoder_num_res_blocks) < 0:
            raise ShowoError(f"{key}.num_res_blocks and decoder_num_res_blocks must be >= 0")
        for mult in (*self.ch_mult, *self.decoder_ch_mult):
            if mult <= 0 or (self.ch * mult) % self.norm_groups:
                raise ShowoError(
                    f"{key}: width ch*mult = {self.ch * mult} must be positive and divisible by norm_groups={self.norm_groups}"
                )
        if self.resolution <= 0 or self.resolution % self.downsample_factor:
            raise ShowoError(
                f"{key}.resolution {self.resolution} is not divisible by the downsample factor {self.downsample_factor}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ShowoError(f"{key}.dropout must be in [0, 1), got {self.dropout}")

    @property
    def codebook_size(self) -> int:
        return 2**self.z_channels

    @property
    def downsample_factor(self) -> int:
        return 2 ** (len(self.ch_mult) - 1)

    def to_dict(self) -> dict[str, Any]:
        return {"model_type": MODEL_TYPE, **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TokenizerConfig:
        """Build from `to_dict()` output; unknown keys are an error (a config from something else)."""
        if not isinstance(data, dict):
            raise ShowoError(f"tokenizer config must be a JSON object, not {type(data).__name__}")
        data = {k: v for k, v in data.items() if k != "model_type"}
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ShowoError(f"unknown tokenizer config keys: {', '.join(unknown)}")
        for key, value in data.items():
            _check_field(key, value)
        config = cls(**data)
        config.check("tokenizer config")
        return config


@dataclass
class TokenizerDataConfig:
    """The embedded training mixture and the fixed evaluation sets."""

    resolution: int = 256
    """Image side in pixels: evaluation images and shapes/digits renders (tiny: 64 -> 16x16 codes)."""
    crop: int | None = None
    """Side of the random training crops (null: `resolution`); smaller crops see more images per second."""
    max_zoom: float = 4.0
    """Photo crops are seen at a log-uniform zoom from 1 (the evaluation scale) up to this; lower keeps
    training closer to the detail density of whole photos at `resolution`."""
    batch_size: int = 8
    """Per-device batch size."""
    weights: dict[str, float] = field(default_factory=lambda: {"photos": 0.7, "shapes": 0.15, "digits": 0.15})
    """Sampling weight of each embedded source: photos (random zoomed crops), shapes, digits."""
    num_workers: int = 0
    """DataLoader workers (0: images are made in the training process, cheap next to the model)."""
    usage_images: int = 256
    """Size of the fixed training-mixture sample on which codebook usage and perplexity are measured."""
    heldout_crops: int = 4
    """Seeded extra crops per held-out photo, besides the whole photo through the Show-o transform."""

    def check(self, key: str) -> None:
        if self.resolution <= 0 or self.batch_size <= 0:
            raise ShowoError(f"{key}.resolution and {key}.batch_size must be positive")
        if self.crop is not None and not 0 < self.crop <= self.resolution:
            raise ShowoError(
                f"{key}.crop must be in 1..{key}.resolution ({self.resolution}), got {self.crop}"
            )
        if self.max_zoom < 1.0:
            raise ShowoError(f"{key}.max_zoom must be >= 1 (1 is the evaluation scale), got {self.max_zoom}")
        if self.num_workers < 0 or self.usage_images <= 0 or self.heldout_crops < 0:
            raise ShowoError(f"{key}.num_workers, usage_images, heldout_crops: negative or zero size")
        sources = ("photos", "shapes", "digits")
        unknown = sorted(set(self.weights) - set(sources))
        if unknown:
            raise ShowoError(
                f"{key}.weights: unknown source(s) {', '.join(unknown)}; expected {', '.join(sources)}"
            )
        if any(v < 0 for v in self.weights.values()) or sum(self.weights.values()) <= 0:
            raise ShowoError(f"{key}.weights must be >= 0 with a positive total")


@dataclass
class TokenizerLossConfig:
    """Loss weights: reconstruction, the official LFQ terms, and an optional patch-GAN."""

    l1: float = 1.0
    """Weight of the mean absolute pixel error."""
    l2: float = 1.0
    """Weight of the mean squared pixel error."""
    commit: float = 0.1
    """LFQ commitment weight (official `commit_loss_multiplier` 0.1)."""
    commit_beta: float = 0.25
    """Weight of the second commitment term, mean((z_q - sg(z))^2) (official beta 0.25)."""
    entropy: float = 0.1
    """LFQ entropy weight (official `entropy_multiplier` 0.1): confident codes, spread over the batch."""
    entropy_mode: Literal["factorized", "joint"] = "factorized"
    """factorized: the official per-bit term (blind to correlated bits); joint: the entropy of the batch's
    distribution over all 2^d codes (the MAGVIT-v2 paper's form), which is what raises codebook usage."""
    gan: float = 0.0
    """Weight of the generator's hinge loss against the patch discriminator; 0 disables the GAN."""
    gan_start_step: int = 0
    """Global step at which the discriminator and the adversarial term switch on."""
    disc_channels: int = 64
    """Width of the first discriminator layer."""
    disc_layers: int = 3
    """Stride-2 layers of the patch discriminator."""
    disc_lr: float | None = None
    """Discriminator learning rate (defaults to optim.lr)."""

    def check(self, key: str) -> None:
        check_autoencoder_loss(self, key, ("l1", "l2", "commit", "commit_beta", "entropy", "gan"))


class ExportedRun:
    """The run directory and export directory of a recipe that trains and exports one model (the image
    tokenizer, the VAE); `export_name` is the export's default subdirectory of the run."""

    export_name: ClassVar[str]

    @property
    def run_dir(self) -> str:
        """`<run.output_dir>/<run.name>`."""
        return f"{self.run.output_dir.rstrip('/')}/{self.run.name}"

    @property
    def export_path(self) -> str:
        """`export_dir`, or `<run_dir>/<export_name>`."""
        return self.export_dir or f"{self.run_dir}/{self.export_name}"


@dataclass
class TokenizerRecipe(ExportedRun):
    """Everything a tokenizer training run needs (kind `tokenizer`)."""

    export_name = "tokenizer"

    kind: Literal["tokenizer"] = "tokenizer"
    """Recipe kind."""
    base: str | None = None
    """Recipe this one extends, relative to this file."""
    resume: str = "auto"
    """auto (continue from the run's last checkpoint if any), never, or a checkpoint path."""
    export_dir: str | None = None
    """Where the trained tokenizer is saved for `load_image_tokenizer` (default `<run_dir>/tokenizer`)."""
    reuse_export: bool = True
    """Skip training when `export_dir` already holds a tokenizer trained from this same recipe."""
    max_minutes: float | None = None
    """Wall-clock cap on training (Lightning `max_time`); the export is written either way."""
    run: RunConfig = field(default_factory=lambda: RunConfig(name=MISSING))
    model: TokenizerConfig = field(default_factory=TokenizerConfig)
    data: TokenizerDataConfig = field(default_factory=TokenizerDataConfig)
    loss: TokenizerLossConfig = field(default_factory=TokenizerLossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)

    def check(self, key: str) -> None:
        check_autoencoder_recipe(self, "tokenizer")


def check_autoencoder_recipe(recipe: Any, what: str) -> None:
    """The run rules the image tokenizer's and the VAE's recipes share (`what` names the model)."""
    if not recipe.resume:
        raise ShowoError("resume must be auto, never or a checkpoint path")
    if recipe.max_minutes is not None and recipe.max_minutes <= 0:
        raise ShowoError(f"max_minutes must be positive, got {recipe.max_minutes}")
    for name in ("resolution", "crop"):
        side = getattr(recipe.data, name)
        if side is not None and side % recipe.model.downsample_factor:
            raise ShowoError(
                f"data.{name} {side} is not divisible by the {what}'s downsample factor "
                f"{recipe.model.downsample_factor}"
            )
    if recipe.optim.accumulate_grad_batches != 1:
        raise ShowoError(f"optim.accumulate_grad_batches must be 1 for {what} runs (raise data.batch_size)")


def check_autoencoder_loss(loss: Any, key: str, weights: tuple[str, ...]) -> None:
    """The loss rules the image tokenizer's and the VAE's recipes share: non-negative `weights`, some
    reconstruction term, a sane patch-GAN."""
    for name in weights:
        if getattr(loss, name) < 0:
            raise ShowoError(f"{key}.{name} must be >= 0, got {getattr(loss, name)}")
    if loss.l1 == 0 and loss.l2 == 0:
        raise ShowoError(f"{key}.l1 and {key}.l2 cannot both be 0 (no reconstruction loss)")
    if loss.gan_start_step < 0 or loss.disc_channels <= 0 or loss.disc_layers <= 0:
        raise ShowoError(f"{key}.gan_start_step must be >= 0 and disc_channels/disc_layers positive")
    if loss.disc_lr is not None and loss.disc_lr <= 0:
        raise ShowoError(f"{key}.disc_lr must be positive, got {loss.disc_lr}")
