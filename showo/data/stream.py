"""One task's infinite, deterministic webdataset stream whose batch at step s depends only on (seed, s).

Layout of the randomness (all seeds from integers, so they are the same in every process):
- Steps are cut into segments of `segment_steps` (the checkpoint cadence). Segment j draws shards with
  `wds.ResampledShards(seed=(seed, task, j), deterministic=True)`: one global shard sequence that
  `split_by_node` (rank) and `split_by_worker` (lane) partition, so ranks and workers read disjoint draws.
- Lanes replace worker ids: a DataLoader with W workers hands out batches round-robin starting at worker 0
  whenever an iterator starts, so worker w of a loader started at step s0 serves the steps congruent to
  `s0 + w` modulo W. Tying the sample order to that residue ("lane") instead of the worker id makes the
  batch of step s the same whether the run started at 0 or resumed at s0.
- Resuming at step s rebuilds the lane's pipeline of segment s // segment_steps and skips, undecoded, the
  samples its earlier steps in that segment consumed: none when s is a checkpoint step, so a resume neither
  replays data nor pays to skip it.

Samples are read by `showo.data.reader` (data-only decoding, codes checked against the recipe's vocabulary
and grid). A `ShowoError` in a loader worker would reach the main process wrapped in the worker's traceback,
so the stream hands it over as an `{"error": message}` item instead, and `raise_stream_errors` raises it
there as the one line it was.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Iterable, Iterator
from typing import Any

import webdataset as wds
from torch.utils.data import IterableDataset, get_worker_info
from webdataset.utils import make_seed

from showo.data.batches import BatchBuilder
from showo.data.reader import decode_stages, shard_samples_stage
from showo.errors import ShowoError

ERROR_KEY = "error"
"""Key of the item a stream yields, instead of a batch, when reading or building it failed."""


def _same_seed_everywhere() -> int:
    """Worker seed for `ResampledShards`: identical on every rank and worker, who then split its draws."""
    return 0


def _every_nth(src: Iterator[Any], start: int, step: int) -> Iterator[Any]:
    return itertools.islice(src, start, None, step)


def split_by_node(rank: int, world_size: int):
    """`wds.split_by_node` with the rank given explicitly (Lightning may not export RANK to workers)."""
    return functools.partial(_every_nth, start=rank, step=world_size)


def split_by_worker(lane: int, lanes: int):
    """`wds.split_by_worker` over lanes (see the module docstring) instead of raw worker ids."""
    return functools.partial(_every_nth, start=lane, step=lanes)


def _skip(src: Iterator[Any], count: int) -> Iterator[Any]:
    return itertools.islice(src, count, None)


class TaskStream(IterableDataset):
    """Yields `{"step", "input_ids", "labels", "samples"}` batches of one task, forever, from `start_step`."""

    def __init__(
        self,
        task_index: int,
        urls: list[str],
        builder: BatchBuilder,
        batch_size: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        lanes: int = 1,
        shuffle_buffer: int = 0,
        segment_steps: int = 1000,
        start_step: int = 0,
    ) -> None:
        super().__init__()
        self.task_index = task_index
        self.urls = urls
        self.builder = builder
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.lanes = max(1, lanes)
        self.shuffle_buffer = shuffle_buffer
        self.segment_steps = max(1, segment_steps)
        self.start_step = start_step

    def samples(self, segment: int, lane: int, skip: int) -> Iterator[dict]:
        """Decoded samples of one lane in one segment, after dropping the first `skip` undecoded ones."""
        stages: list[Any] = [
            wds.ResampledShards(
                self.urls,
                seed=make_seed(self.seed, self.task_index, segment),
                worker_seed=_same_seed_everywhere,
                deterministic=True,
            ),
            split_by_node(self.rank, self.world_size),
            split_by_worker(lane, self.lanes),
            shard_samples_stage(),
        ]
        if self.shuffle_buffer > 1:
            seed = make_seed(self.seed, self.task_index, segment, self.rank, lane)
            stages.append(wds.shuffle(self.shuffle_buffer, initial=self.shuffle_buffer, seed=seed))
        if skip:
            stages.append(functools.partial(_skip, count=skip))
        stages += decode_stages(self.builder.code_spec())
        return iter(wds.DataPipeline(*stages))

    def batch_seed(self, step: int) -> int:
        return make_seed(self.seed, self.task_index, self.rank, step, 1)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        try:
            yield from self._batches()
        except ShowoError as err:
            yield {ERROR_KEY: str(err)}

    def _batches(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        worker = info.id if info is not None else 0
        if (info.num_workers if info is not None else 1) != self.lanes:
            raise ShowoError(
                f"stream built for {self.lanes} loader workers runs under {info.num_workers if info else 1}"
            )
        lane = (self.start_step + worker) % self.lanes
        step = self.start_step + worker
        while True:
            segment = step // self.segment_steps
            segment_start = segment * self.segment_steps
            first = segment_start + (lane - segment_start) % self.lanes
            skip = (step - first) // self.lanes * self.batch_size
            samples = self.samples(segment, lane, skip)
            while step < segment_start + self.segment_steps:
                batch = list(itertools.islice(samples, self.batch_size))
                yield {"step": step, **self.builder(batch, self.batch_seed(step))}
                step += self.lanes


def raise_stream_errors(batches: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """The batches of a stream's loader, raising the `ShowoError` a worker handed over as an item."""
    for batch in batches:
        if ERROR_KEY in batch:
            raise ShowoError(batch[ERROR_KEY])
        yield batch
