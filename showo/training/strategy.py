"""Lightning strategies from the recipe: DeepSpeed ZeRO on GPUs and, through a small subclass, on CPU too.

Lightning's `DeepSpeedStrategy` refuses a CPU accelerator, although DeepSpeed itself runs ZeRO 1/2/3 on CPU
with gloo. The subclass below lifts exactly the three CUDA-only checks so the ZeRO code paths that a GPU run
takes are exercised by the CPU test suite instead of being mocked.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import torch
from lightning.fabric.utilities.seed import reset_seed
from lightning.pytorch.strategies import DDPStrategy, DeepSpeedStrategy, Strategy

from showo.errors import ShowoError

STRATEGY_NAMES = ("auto", "ddp", "deepspeed")


def _skip_shm_comm_op() -> None:
    """DeepSpeed JIT-compiles a shared-memory allreduce on first use (~30 s on CPU); gloo needs none of it."""
    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    import deepspeed.comm.torch  # noqa: F401  (loads the module we patch below)

    sys.modules["deepspeed.comm.torch"].build_shm_op = lambda: None


class CPUDeepSpeedStrategy(DeepSpeedStrategy):
    """`DeepSpeedStrategy` on the CPU accelerator (gloo backend): same engine, same checkpoints, same ZeRO."""

    strategy_name = "deepspeed_cpu"

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("process_group_backend", "gloo")
        _skip_shm_comm_op()
        super().__init__(**kwargs)

    def setup_environment(self) -> None:
        DDPStrategy.setup_environment(self)

    @property
    def root_device(self) -> torch.device:
        return torch.device("cpu", self.local_rank)

    def setup_distributed(self) -> None:
        reset_seed()
        self.set_world_ranks()
        self._init_deepspeed_distributed()


def resolve_accelerator(name: str) -> str:
    """`auto` means CUDA when there is one: the rest of the choices depend on the concrete device."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name in ("gpu", "cuda"):
        if not torch.cuda.is_available():
            raise ShowoError(f"trainer.accelerator={name} but no CUDA device is visible")
        return "cuda"
    if name == "mps" and not torch.backends.mps.is_available():
        raise ShowoError("trainer.accelerator=mps but no Apple GPU is available")
    if name not in ("cpu", "mps"):
        raise ShowoError(f"trainer.accelerator must be auto, cpu, cuda/gpu or mps, got {name!r}")
    return name


def resolve_precision(precision: str, accelerator: str) -> str:
    """bf16 where the hardware has it; otherwise fall back to fp32 rather than fail at the first kernel."""
    if precision.startswith("bf16") and accelerator == "cuda" and not torch.cuda.is_bf16_supported():
        return "32-true"
    return precision


def build_strategy(strategy_cfg: Any, accelerator: str, micro_batch_size: int = 1) -> Strategy | str:
    """The Lightning strategy for `trainer.strategy` of a recipe (name, zero_stage, offload, bucket sizes)."""
    name = strategy_cfg.name
    if name not in STRATEGY_NAMES:
        raise ShowoError(f"trainer.strategy.name must be one of {', '.join(STRATEGY_NAMES)}, got {name!r}")
    backend = "gloo" if accelerator == "cpu" else None
    if name == "auto":
        return "auto"
    if name == "ddp":
        return DDPStrategy(process_group_backend=backend)
    stage = int(strategy_cfg.zero_stage)
    if stage not in (0, 1, 2, 3):
        raise ShowoError(f"trainer.strategy.zero_stage must be 0, 1, 2 or 3, got {stage}")
    kwargs: dict[str, Any] = dict(
        stage=stage,
        offload_optimizer=bool(strategy_cfg.offload_optimizer),
        offload_parameters=bool(strategy_cfg.offload_params) and stage == 3,
        allgather_bucket_size=int(strategy_cfg.allgather_bucket_size),
        reduce_bucket_size=int(strategy_cfg.reduce_bucket_size),
        logging_batch_size_per_gpu=micro_batch_size,
    )
    if accelerator == "cpu":
        return CPUDeepSpeedStrategy(**kwargs)
    return DeepSpeedStrategy(**kwargs)


def is_deepspeed(strategy: Strategy | str) -> bool:
    return isinstance(strategy, DeepSpeedStrategy)
