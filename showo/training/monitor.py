"""Throughput and input-pipeline health: samples/s and tokens/s per stream, data wait against compute."""

from __future__ import annotations

import time
from typing import Any

import lightning.pytorch as pl


class StepTimer(pl.Callback):
    """Logs, every `log_every` steps, where the wall time of a step went and how much each stream moved."""

    def __init__(self, pad_id: int, log_every: int) -> None:
        self.pad_id = pad_id
        self.log_every = max(1, log_every)
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
        for task, rows in batch.items():
            tokens = int((rows["input_ids"] != self.pad_id).sum()) * world
            metrics[f"perf/samples_per_s_{task}"] = rows["samples"] * world / step_time
            metrics[f"perf/tokens_per_s_{task}"] = tokens / step_time
        pl_module.log_dict(metrics, on_step=True, on_epoch=False)
