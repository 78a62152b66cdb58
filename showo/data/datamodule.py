"""The LightningDataModule: one stream per task, combined so that every step carries a batch of each.

Checkpoints hold the stream state (seed, batches consumed, samples seen per task, the shard list of every
task). Streams are functions of (seed, batch index) over that shard list (see `showo.data.stream`), so
restoring that state restarts every stream exactly where the interrupted run stood, with no data replayed.
A resume over another shard list (a shard deleted from a glob, one added) would silently train on other
data, so it is refused unless the recipe sets `data.allow_shard_change`.
"""

from __future__ import annotations

import os
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import CombinedLoader
from torch.utils.data import DataLoader

from showo.data.batches import BatchBuilder
from showo.data.shards import expand_shards
from showo.data.stream import TaskStream, raise_stream_errors
from showo.errors import ShowoError
from showo.prompting import Prompter
from showo.recipe.schema import DataConfig
from showo.tasks import TASKS

# Streams are ordered by the official row order [t2i | lm | mmu], then the rest.


def shard_list(urls: list[str], key: str) -> list[list[Any]]:
    """[file name, bytes] of every shard, in stream order: what a checkpoint records of its data."""
    try:
        return [[os.path.basename(u), os.path.getsize(u)] for u in urls]
    except OSError as err:
        raise ShowoError(f"{key}: shard {err.filename} cannot be read ({err.strerror})") from None


def shard_change(task: str, before: list[list[Any]], now: list[list[Any]]) -> str | None:
    """What differs between the shard list a checkpoint was trained on and the recipe's, or None."""
    if before == now:
        return None
    names_before, names_now = [n for n, _ in before], [n for n, _ in now]
    if not now:
        return f"data.streams.{task} is gone from the recipe"
    if not before:
        return f"data.streams.{task} is new in the recipe"
    gone = [n for n in names_before if n not in names_now]
    new = [n for n in names_now if n not in names_before]
    if gone:
        detail = f"{gone[0]} is missing" + (f" (and {len(gone) - 1} more)" if len(gone) > 1 else "")
    elif new:
        detail = f"{new[0]} is new" + (f" (and {len(new) - 1} more)" if len(new) > 1 else "")
    elif names_before != names_now:
        detail = "the shards are in another order"
    else:
        changed = next(n for (n, b), (_, c) in zip(before, now) if b != c)
        detail = f"{changed} changed size"
    return (
        f"data.streams.{task}.shards: the checkpoint was trained on {len(before)} shards, the recipe lists"
        f" {len(now)}; {detail}"
    )


class StreamLoader(DataLoader):
    """A stream's DataLoader: a `ShowoError` a worker handed over as an item is raised here, as one line."""

    def __iter__(self):
        return raise_stream_errors(super().__iter__())


class ShowoDataModule(pl.LightningDataModule):
    """Per-task webdataset streams from the recipe's `data` section, prompts built in the workers."""

    def __init__(
        self,
        data: DataConfig,
        prompter: Prompter,
        seed: int,
        segment_steps: int,
        objective: Any = None,
        accumulate_grad_batches: int = 1,
    ) -> None:
        super().__init__()
        self.data = data
        self.seed = seed
        self.segment_steps = segment_steps * accumulate_grad_batches
        self.accumulate = accumulate_grad_batches
        self.streams = {t: data.streams[t] for t in TASKS if data.streams.get(t) is not None}
        unknown = set(k for k, v in data.streams.items() if v is not None) - set(TASKS)
        if unknown or not self.streams:
            raise ShowoError(f"data.streams needs tasks among {', '.join(TASKS)}, got {sorted(data.streams)}")
        self.urls = {t: expand_shards(s.shards, f"data.streams.{t}.shards") for t, s in self.streams.items()}
        self.shard_lists = {t: shard_list(u, f"data.streams.{t}.shards") for t, u in self.urls.items()}
        self.builders = {
            t: BatchBuilder(
                task=t,
                prompter=prompter,
                first_sentence_prob=s.first_sentence_prob,
                strip_prefixes=s.strip_prefixes,
                questions=tuple(s.questions),
                max_frames=s.max_frames,
                objective=objective,
            )
            for t, s in self.streams.items()
        }
        self.resume_batches = 0

    @property
    def batch_sizes(self) -> dict[str, int]:
        return {t: s.batch_size for t, s in self.streams.items()}

    def _ranks(self) -> tuple[int, int]:
        if self.trainer is None:
            return 0, 1
        return self.trainer.global_rank, self.trainer.world_size

    def stream(self, task: str, start_batch: int = 0, rank: int = 0, world_size: int = 1) -> TaskStream:
        """The stream of one task as this rank sees it from micro-batch `start_batch` on."""
        cfg = self.streams[task]
        return TaskStream(
            task_index=TASKS.index(task),
            urls=self.urls[task],
            builder=self.builders[task],
            batch_size=cfg.batch_size,
            seed=self.seed,
            rank=rank,
            world_size=world_size,
            lanes=self.data.num_workers,
            shuffle_buffer=self.data.shuffle_buffer,
            segment_steps=self.segment_steps,
            start_step=start_batch,
        )

    def loader(self, task: str, start_batch: int = 0, rank: int = 0, world_size: int = 1) -> DataLoader:
        workers = self.data.num_workers
        return StreamLoader(
            self.stream(task, start_batch, rank, world_size),
            batch_size=None,
            num_workers=workers,
            persistent_workers=workers > 0,
            pin_memory=torch.cuda.is_available(),
            prefetch_factor=4 if workers > 0 else None,
        )

    def train_dataloader(self) -> CombinedLoader:
        rank, world = self._ranks()
        start = self.resume_batches
        if self.trainer is not None:
            start = max(start, self.trainer.global_step * self.accumulate)
        loaders = {t: self.loader(t, start, rank, world) for t in self.streams}
        return CombinedLoader(loaders, mode="max_size_cycle")

    def state_dict(self) -> dict[str, Any]:
        step = self.trainer.global_step if self.trainer is not None else 0
        _, world = self._ranks()
        batches = step * self.accumulate
        return {
            "seed": self.seed,
            "batches": batches,
            "world_size": world,
            "samples_seen": {t: batches * s.batch_size * world for t, s in self.streams.items()},
            "shards": self.shard_lists,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if state_dict.get("seed") != self.seed:
            raise ShowoError(
                f"run.seed {self.seed} differs from the checkpoint's {state_dict.get('seed')}:"
                " resuming would change the data order (start a new run instead)"
            )
        saved = state_dict.get("shards")
        if saved is not None and not self.data.allow_shard_change:
            for task in sorted(set(saved) | set(self.shard_lists)):
                change = shard_change(task, saved.get(task, []), self.shard_lists.get(task, []))
                if change is not None:
                    raise ShowoError(
                        f"{change}: resuming would train on other data than the checkpoint"
                        " (set data.allow_shard_change: true to resume anyway)"
                    )
        self.resume_batches = int(state_dict["batches"])
