"""The typed Show-o recipe: OmegaConf structured dataclasses, defaults at paper scale (Phi-1.5, 256 px).

Each field's docstring says what it controls. OmegaConf enforces the types and `Literal` choices while
merging; the `check(key)` methods add the value rules OmegaConf cannot express (positive sizes, ranges,
combinations). `showo.recipe.loader.load_recipe` calls `check` on every node after merging, with the node's
dotted key, so messages name the exact key. Other recipe kinds (the image tokenizer's `TokenizerRecipe`)
reuse `RunConfig`, `OptimConfig` and `TrainerConfig` and get the same checks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

from omegaconf import MISSING

from showo.attention import FLEX_KERNEL_OPTIONS
from showo.errors import ShowoError
from showo.objectives.base import ObjectiveConfig
from showo.tasks import TASKS

DEFAULT_CAPTION_QUESTIONS: tuple[str, ...] = (
    "Describe the image.",
    "What is in this image?",
    "Write a short caption for this picture.",
)
"""Our caption prompts: the official `training/questions.json` is not in its released snapshot."""


def _positive(key: str, value: float) -> None:
    if value <= 0:
        raise ShowoError(f"{key} must be positive, got {value}")


def _non_negative(key: str, value: float) -> None:
    if value < 0:
        raise ShowoError(f"{key} must be >= 0, got {value}")


def _fraction(key: str, value: float, *, upper_open: bool = False) -> None:
    if not (0.0 <= value < 1.0 if upper_open else 0.0 <= value <= 1.0):
        raise ShowoError(f"{key} must be in [0, 1{')' if upper_open else ']'}, got {value}")


@dataclass
class RunConfig:
    """Where a run writes and how it is seeded."""

    name: str = MISSING
    """Run name; the run directory is `<output_dir>/<name>`."""
    output_dir: str = "runs"
    """Parent directory of run directories (relative to the working directory)."""
    seed: int = 10086
    """Global seed (the official value)."""

    def check(self, key: str) -> None:
        if not self.name.strip() or "/" in self.name:
            raise ShowoError(f"{key}.name must be a non-empty name without '/', got {self.name!r}")


@dataclass
class ModelConfig:
    """The LLM, both tokenizers and the sequence geometry."""

    llm: str | None = None
    """Local Hugging Face Phi directory with weights (e.g. microsoft/phi-1_5 downloaded), or null."""
    llm_config: dict[str, Any] | None = None
    """PhiConfig keyword arguments for a randomly initialised LLM, used when `llm` is null."""
    text_tokenizer: str | None = None
    """Text tokenizer directory; defaults to `llm`."""
    image_tokenizer: str | None = None
    """Image tokenizer directory (ours or the official MAGVIT-v2 checkpoint); required by the objectives
    that train on image codes (mtp, ar), unused by a latent one (diffusion: `objective.vae`)."""
    codebook_size: int = 8192
    """Number of image codes K (2^13 for MAGVIT-v2)."""
    image_grid: list[int] = field(default_factory=lambda: [16, 16])
    """Image positions [h, w] per image: the code grid (16x16 at 256 px, 32x32 at 512 px), or for the
    diffusion objective the patch grid (latent grid / patch size: 256 px, 8x VAE, 2x2 patches -> 16x16)."""
    max_text_len: int = 128
    """M, the text budget; every row has length M + h*w + 3."""
    attn_implementation: Literal["sdpa", "eager", "flex"] = "sdpa"
    """Attention kernel for the LLM: additive float masks with sdpa and eager, the same rule as a
    FlexAttention block mask with flex (GPU training only: torch has no FlexAttention backward on a CPU)."""
    flex_kernel_options: dict[str, int] = field(default_factory=dict)
    """Triton settings of the fused flex kernels (`BLOCK_M`, `BLOCK_N`, `num_stages`, `num_warps`, and the
    backward's `BLOCK_M1` ...); empty keeps torch's. For a GPU whose shared memory the default blocks
    exceed (triton "out of resource: shared memory"): smaller blocks (64) and fewer stages fit."""
    compile: bool = False
    """`torch.compile` the transformer's decoder for training (same numbers, first steps slower)."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass to save memory."""

    def check(self, key: str) -> None:
        if self.llm is None and self.llm_config is None:
            raise ShowoError(f"{key}.llm (a model directory) or {key}.llm_config is required")
        if self.llm is not None and self.llm_config is not None:
            raise ShowoError(f"set only one of {key}.llm and {key}.llm_config")
        if self.llm is None and self.text_tokenizer is None:
            raise ShowoError(f"{key}.text_tokenizer is required when {key}.llm is null")
        _positive(f"{key}.codebook_size", self.codebook_size)
        _positive(f"{key}.max_text_len", self.max_text_len)
        if self.flex_kernel_options and self.attn_implementation != "flex":
            raise ShowoError(f"{key}.flex_kernel_options needs {key}.attn_implementation: flex")
        for name, value in self.flex_kernel_options.items():
            if name not in FLEX_KERNEL_OPTIONS:
                raise ShowoError(
                    f"{key}.flex_kernel_options: unknown option {name!r}; expected {', '.join(FLEX_KERNEL_OPTIONS)}"
                )
            _positive(f"{key}.flex_kernel_options.{name}", value)
        if len(self.image_grid) != 2 or min(self.image_grid) <= 0:
            raise ShowoError(
                f"{key}.image_grid must be two positive integers [h, w], got {list(self.image_grid)}"
            )

    @property
    def num_image_tokens(self) -> int:
        """N = h * w codes per image."""
        return self.image_grid[0] * self.image_grid[1]

    @property
    def seq_len(self) -> int:
        """L = M + N + 3 (task token, SOI, EOI), the length of every row."""
        return self.max_text_len + self.num_image_tokens + 3


@dataclass
class StreamConfig:
    """One task's data stream: shards, per-GPU batch size and loss weight."""

    shards: list[str] = MISSING
    """Shard paths: globs (`data/x/*.tar`) or brace patterns (`data/x/x-{000000..000127}.tar`)."""
    batch_size: int = 1
    """Per-GPU micro-batch size of this task; every step carries a batch of every stream."""
    loss_coeff: float = 1.0
    """Weight of this task's loss in the total (official: t2i 1.0, lm 0.1, mmu 1.0)."""
    first_sentence_prob: float = 0.0
    """Probability of keeping only the caption's first sentence (official t2i: 0.5 on recaptioned data)."""
    strip_prefixes: bool = False
    """Strip recaptioner boilerplate ("The image features ...") from captions (official t2i: on)."""
    questions: list[str] = field(default_factory=lambda: list(DEFAULT_CAPTION_QUESTIONS))
    """Caption prompts for mmu rows (`USER: \\n{q} ASSISTANT:`), one drawn per sample."""
    max_frames: int = 2
    """Frames per mixed-modality sequence (keyframes with captions)."""

    def check(self, key: str) -> None:
        if not self.shards:
            raise ShowoError(f"{key}.shards must list at least one shard path or glob")
        if self.batch_size <= 0:
            raise ShowoError(f"{key}.batch_size must be a positive integer, got {self.batch_size}")
        _non_negative(f"{key}.loss_coeff", self.loss_coeff)
        _fraction(f"{key}.first_sentence_prob", self.first_sentence_prob)
        if not self.questions:
            raise ShowoError(f"{key}.questions must not be empty")
        _positive(f"{key}.max_frames", self.max_frames)


@dataclass
class DataConfig:
    """Resolution, loader settings and the task streams."""

    resolution: int = 256
    """Image side in pixels the shards were built at (256 -> 16x16 codes, 512 -> 32x32)."""
    num_workers: int = 4
    """DataLoader workers per stream (shards are pre-tokenized, so few suffice; official used 32)."""
    shuffle_buffer: int = 1000
    """Samples in each stream's shuffle buffer (official 1000)."""
    streams: dict[str, StreamConfig | None] = field(default_factory=dict)
    """Task name (t2i | c2i | mmu | lm | instruct | mixed) -> stream; null drops a stream set by `base:`."""
    allow_shard_change: bool = False
    """Resume even when a stream's shards differ from those the checkpoint was trained on (a shard deleted
    from a glob, one added, one rewritten); off by default because the run would silently read other data."""
    pack_tokens: int = 0
    """Sequence packing: 0 keeps the official padded rows; N drops the pads and packs each step's samples
    (every task) into rows of N tokens with per-sample attention and positions (`showo.packing`). N must
    hold the longest row (L, or a mixed row). sdpa attends per sample, so a budget holding the whole
    micro-batch costs no more attention and leaves no padding; eager builds an N x N mask per row."""

    def check(self, key: str) -> None:
        _positive(f"{key}.resolution", self.resolution)
        _non_negative(f"{key}.num_workers", self.num_workers)
        _non_negative(f"{key}.shuffle_buffer", self.shuffle_buffer)
        _non_negative(f"{key}.pack_tokens", self.pack_tokens)
        if not self.streams:
            raise ShowoError(f"{key}.streams must define at least one task stream ({', '.join(TASKS)})")


def _default_objective() -> ObjectiveConfig:
    from showo import objectives

    return objectives.config_type(objectives.DEFAULT)()


@dataclass
class OptimConfig:
    """AdamW with linear warmup then cosine decay (the official schedule)."""

    lr: float = 1e-4
    """Peak learning rate."""
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    """AdamW (beta1, beta2)."""
    eps: float = 1e-8
    """AdamW epsilon."""
    weight_decay: float = 0.01
    """Decay for weight matrices; biases, norms (QK-norm included) and embeddings get none."""
    warmup_steps: int = 5000
    """Linear warmup from 0 to `lr`."""
    max_steps: int = 500_000
    """Optimizer steps of the run; the cosine reaches `min_lr_ratio * lr` here."""
    min_lr_ratio: float = 0.0
    """Final learning rate as a fraction of `lr` (official 0)."""
    grad_clip: float | None = 1.0
    """Gradient-norm clipping (the official 48-GPU DeepSpeed config clips at 1.0); null disables it."""
    accumulate_grad_batches: int = 1
    """Micro-batches per optimizer step."""

    def check(self, key: str) -> None:
        _positive(f"{key}.lr", self.lr)
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise ShowoError(f"{key}.betas must be two numbers in [0, 1), got {list(self.betas)}")
        _positive(f"{key}.eps", self.eps)
        _non_negative(f"{key}.weight_decay", self.weight_decay)
        _non_negative(f"{key}.warmup_steps", self.warmup_steps)
        _positive(f"{key}.max_steps", self.max_steps)
        if self.warmup_steps > self.max_steps:
            raise ShowoError(
                f"{key}.warmup_steps ({self.warmup_steps}) exceeds {key}.max_steps ({self.max_steps})"
            )
        _fraction(f"{key}.min_lr_ratio", self.min_lr_ratio)
        if self.grad_clip is not None:
            _positive(f"{key}.grad_clip", self.grad_clip)
        _positive(f"{key}.accumulate_grad_batches", self.accumulate_grad_batches)


@dataclass
class StrategyConfig:
    """Distribution: Lightning's auto/DDP, or DeepSpeed ZeRO with optional CPU offload."""

    name: Literal["auto", "ddp", "deepspeed"] = "deepspeed"
    """Lightning strategy."""
    zero_stage: Literal[0, 1, 2, 3] = 2
    """DeepSpeed ZeRO stage (2 partitions optimizer states and gradients; 3 also parameters)."""
    offload_optimizer: bool = False
    """Keep optimizer states on the CPU (DeepSpeed ZeRO-Offload)."""
    offload_params: bool = False
    """Keep parameters on the CPU (ZeRO-3 only)."""
    allgather_bucket_size: int = 200_000_000
    """Elements per all-gather bucket (Lightning's default)."""
    reduce_bucket_size: int = 200_000_000
    """Elements per reduce bucket (Lightning's default)."""

    def check(self, key: str) -> None:
        if self.name != "deepspeed" and (self.offload_optimizer or self.offload_params):
            raise ShowoError(f"{key}.offload_* needs {key}.name=deepspeed, got {self.name!r}")
        if self.offload_optimizer and self.zero_stage == 0:
            raise ShowoError(f"{key}.offload_optimizer needs {key}.zero_stage >= 1")
        if self.offload_params and self.zero_stage != 3:
            raise ShowoError(f"{key}.offload_params needs {key}.zero_stage=3, got {self.zero_stage}")
        _positive(f"{key}.allgather_bucket_size", self.allgather_bucket_size)
        _positive(f"{key}.reduce_bucket_size", self.reduce_bucket_size)


@dataclass
class SampleConfig:
    """Fixed previews logged to TensorBoard during training."""

    prompts: list[str] = field(default_factory=list)
    """Prompts (class names for c2i) generated at every `sample_every` steps, fixed seed."""
    steps: int = 12
    """MaskGIT steps of the preview (official 12)."""
    guidance: float = 0.0
    """CFG weight w of the preview (official: 1.5 in stage 1, 0 after)."""
    temperature: float = 1.0
    """Gumbel-noise temperature of the preview."""
    seed: int = 0
    """Generator seed, so previews are comparable across steps."""
    caption_images: int = 4
    """How many fixed held-out images (the first of the mmu or instruct stream's shards) to caption."""

    def check(self, key: str) -> None:
        _positive(f"{key}.steps", self.steps)
        _non_negative(f"{key}.guidance", self.guidance)
        _non_negative(f"{key}.temperature", self.temperature)
        _non_negative(f"{key}.caption_images", self.caption_images)


@dataclass
class TrainerConfig:
    """Lightning Trainer settings: hardware, precision, strategy and cadences."""

    accelerator: Literal["auto", "cpu", "gpu", "cuda"] = "gpu"
    """Lightning accelerator (`auto`: CUDA when visible, else CPU)."""
    devices: int | str = 8
    """Devices per node (an int, or Lightning's "auto")."""
    num_nodes: int = 1
    """Nodes (official pretraining: 6 x 8 GPUs)."""
    precision: Literal["32-true", "bf16-mixed", "bf16-true", "16-mixed", "16-true"] = "bf16-mixed"
    """Lightning precision."""
    strategy: StrategyConfig = field(default_factory=StrategyConfig)
    """Distribution strategy."""
    log_every: int = 50
    """Steps between scalar logs."""
    sample_every: int = 1000
    """Steps between preview grids and captions (0 disables them)."""
    checkpoint_every: int = 10_000
    """Steps between checkpoints."""
    keep_checkpoints: int = 3
    """Most recent checkpoints kept (-1 keeps all)."""
    peak_tflops: float | None = None
    """Per-device peak (TFLOP/s) for the logged model FLOPs utilisation; None: the known-GPU table in
    `showo.device` (half precision only; no MFU is logged on a CPU or an unknown device)."""
    sample: SampleConfig = field(default_factory=SampleConfig)
    """Preview settings."""

    def check(self, key: str) -> None:
        if isinstance(self.devices, int):
            _positive(f"{key}.devices", self.devices)
        elif self.devices != "auto":
            raise ShowoError(f"{key}.devices must be a positive integer or 'auto', got {self.devices!r}")
        _positive(f"{key}.num_nodes", self.num_nodes)
        _positive(f"{key}.log_every", self.log_every)
        _non_negative(f"{key}.sample_every", self.sample_every)
        _positive(f"{key}.checkpoint_every", self.checkpoint_every)
        if self.keep_checkpoints == 0 or self.keep_checkpoints < -1:
            raise ShowoError(f"{key}.keep_checkpoints must be >= 1 or -1 (all), got {self.keep_checkpoints}")
        if self.peak_tflops is not None and not (math.isfinite(self.peak_tflops) and self.peak_tflops > 0):
            raise ShowoError(f"{key}.peak_tflops must be a positive number or null, got {self.peak_tflops}")


@dataclass
class ShowoRecipe:
    """Everything a Show-o training stage needs (kind `showo`)."""

    kind: Literal["showo"] = "showo"
    """Recipe kind; `tokenizer` selects `showo.tokenizer.config.TokenizerRecipe` instead."""
    base: str | None = None
    """Recipe this one extends, relative to this file (merged first; null once resolved)."""
    init_from: str | None = None
    """Weights to start from: a previous stage's run directory, checkpoint or exported model dir."""
    resume: str = "auto"
    """auto (continue from the run's last checkpoint if any), never (YAML false), or a checkpoint path."""
    run: RunConfig = field(default_factory=RunConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    objective: ObjectiveConfig = field(default_factory=lambda: _default_objective())
    """The image objective's section, typed per objective (`showo.objectives`: mtp, ar, diffusion)."""
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)

    def check(self, key: str) -> None:
        from showo import objectives

        if not self.resume:
            raise ShowoError("resume must be auto, never or a checkpoint path")
        objective = objectives.get(self.objective)
        if objective.image_format == "codes" and self.model.image_tokenizer is None:
            raise ShowoError(
                f"model.image_tokenizer is required: the {objective.name} objective trains on image codes"
            )
        grid = self.model.image_grid
        if self.data.pack_tokens:
            mixed = self.data.streams.get("mixed")
            frames = mixed.max_frames if mixed is not None else 1
            longest = max(
                self.model.seq_len, self.model.max_text_len + 1 + frames * (self.model.num_image_tokens + 2)
            )
            if self.data.pack_tokens < longest:
                raise ShowoError(
                    f"data.pack_tokens {self.data.pack_tokens} is shorter than the longest row ({longest} tokens)"
                )
        if self.data.resolution % grid[0] or self.data.resolution % grid[1]:
            raise ShowoError(
                f"data.resolution {self.data.resolution} is not divisible by model.image_grid {list(grid)}"
            )

    @property
    def run_dir(self) -> str:
        """`<run.output_dir>/<run.name>`."""
        return f"{self.run.output_dir.rstrip('/')}/{self.run.name}"
