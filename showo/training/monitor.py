"""Throughput and input-pipeline health: samples/s and tokens/s per stream, data wait against compute,
model FLOPs utilisation and peak memory."""

from __future__ import annotations

import resource
import sys
import time
from typing import Any

import lightning.pytorch as pl
import torch

GIB = 2**30


def peak_memory_gib(device: torch.device) -> float:
    """Peak allocated GPU memory of this process's device; on a CPU, the process's peak resident set."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / GIB
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return rss / (GIB if sys.platform == "darwin" else 2**20)


class StepTimer(pl.Callback):
    """Logs, every `log_every` steps, where the wall time of a step went and how much each stream moved.

    ``perf/tokens_per_s`` counts the positions the transformer ran (the module's ``positions_run``: pads
    included, the hardware computes them; packed rows have few), ``perf/nonpad_tokens_per_s`` the samples'
    own tokens. MFU counts ``flops_per_token`` (6 x parameters, as ``showo recipe plan`` does) for every
    position run, over ``peak_tflops`` per device; without a peak it is not logged.
    """

    def __init__(
        self, pad_id: int, log_every: int, flops_per_token: float = 0.0, peak_tflops: float | None = None
    ) -> None:
        self.pad_id = pad_id
        self.log_every = max(1, log_every)
        self.flops_per_token = flops_per_token
        self.peak_tflops = peak_tflops
        self._start: float | None = None
        self._end: float | None = None
        self._wait = 0.0

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        now = time.perf_counter()
        self._wait = now - self._end if self._end is not None else 0.0
        self._start = now

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        now = time.perf_counter()
        compute = now - (self._start or now)
        step_time = max(compute + self._wait, 1e-9)
        self._end = now
        if trainer.global_step % self.log_every:
            return
        world = trainer.world_size
        metrics = {"perf/data_wait_s": self._wait, "perf/compute_s": compute, "perf/step_s": step_time}
        nonpad = 0
        for task, rows in batch.items():
            tokens = int((rows["input_ids"] != self.pad_id).sum()) * world
            nonpad += tokens
            metrics[f"perf/samples_per_s_{task}"] = rows["samples"] * world / step_time
            metrics[f"perf/tokens_per_s_{task}"] = tokens / step_time
        every = getattr(pl_module, "positions_run", 0) * world
        metrics["perf/tokens_per_s"] = every / step_time
        metrics["perf/nonpad_tokens_per_s"] = nonpad / step_time
        if self.peak_tflops:
            metrics["perf/mfu"] = self.flops_per_token * every / step_time / (self.peak_tflops * 1e12 * world)
        metrics["perf/peak_memory_gib"] = peak_memory_gib(pl_module.device)
        pl_module.log_dict(metrics, on_step=True, on_epoch=False)
