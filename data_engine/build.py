"""`showo-data build`: sources -> safe decode + Show-o transform (DataLoader workers) -> recaption ->
batched encode under inference mode (image codes or VAE latents, see `encoders`) -> shards written on a
background thread.

Shards are units of the input order (see `sources`), partitions take every `world_size`-th unit, and a
shard whose record exists is skipped, so reruns resume, partitions add up to one run, and every batch
is formed from one unit's inputs only (the same batches, hence the same codes or latents, however the
work runs).
Exact duplicates (sha1 of the image bytes; optionally identical code sequences) are dropped within a
shard and recorded in `dropped.jsonl`; duplicates in different shards cannot be dropped without making
shards depend on each other, so they are written and listed in `duplicates_across_shards.jsonl`.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from data_engine.decode import bomb_limit
from data_engine.encoders import ImageEncoder, load_encoder
from data_engine.finished import FINISHED_FILE, record_finished
from data_engine.manifest import BUILD_FILE, DATASET_FILES, check_build, check_unrecorded, finalize
from data_engine.options import DEDUP_MODES, BuildOptions, check_encoder, check_numbers, partition
from data_engine.outdir import make_output_dir, metadata_lock, partition_lock
from data_engine.prepare import Prepared, PrepareDataset, PrepareOptions, SourceFailed, UnitEnd, passthrough
from data_engine.recaption import Captioner, make_captioner
from data_engine.resources import announce, choose
from data_engine.sources import Source, Unit, open_source, sanitize_name
from data_engine.writer import (
    BackgroundWriter,
    EncodedSample,
    ShardJob,
    failpoint,
    finished_record,
    remove_stale_temporaries,
    remove_temporaries,
)
from showo.device import resolve_device
from showo.errors import ShowoError

EMPTY_RECAPTION = "empty_recaption"


@dataclass
class _UnitState:
    """A unit in flight: accepted inputs waiting for a batch, finished samples, dropped inputs."""

    unit: Unit
    started: float
    pending: list[Prepared] = field(default_factory=list)
    samples: list[EncodedSample] = field(default_factory=list)
    dropped: list[dict] = field(default_factory=list)
    seen_sha1: dict[str, str] = field(default_factory=dict)
    seen_codes: dict[bytes, tuple[int, str]] = field(default_factory=dict)
    tasks: Counter = field(default_factory=Counter)
    images: int = 0


class Builder:
    """One partition of one build; `run()` returns the report when this partition completed the set."""

    def __init__(self, options: BuildOptions):
        self.options = options
        if options.dedup not in DEDUP_MODES:
            raise ShowoError(
                f"unknown dedup mode {options.dedup!r}; expected one of {', '.join(DEDUP_MODES)}"
            )
        check_numbers(options)
        check_encoder(options)
        if options.max_pixels is not None and not 0 < options.max_pixels <= bomb_limit():
            raise ShowoError(f"--max-pixels must be in 1..{bomb_limit()} (Pillow's decompression-bomb limit)")
        self.source: Source = open_source(
            options.source, image_root=options.image_root, split=options.split, limit=options.limit
        )
        self.rank, self.world_size = partition(options.rank, options.world_size)
        self.device = resolve_device(options.device)
        self.resources, self.resources_note = choose(
            options.workers,
            options.threads,
            self.device,
            self.world_size,
            options.world_size is not None,
            options.batch_size,
        )
        self.captioner: Captioner = make_captioner(
            options.recaptioner, options.caption_prompt, options.caption_max_tokens, self.device
        )
        self.encoder: ImageEncoder = load_encoder(
            options.tokenizer, options.vae, options.resolution, self.device
        )
        self.grid = self.encoder.grid
        if self.captioner.needs_template and not self.source.has_templates:
            raise ShowoError(
                f"the template recaptioner needs embedded: or imagefolder: data, not {self.source.kind}:"
            )
        self.name = self.source.default_name if options.name is None else options.name
        if self.name != sanitize_name(self.name):
            raise ShowoError(
                f"--name {self.name!r} may hold only letters, digits, '_' and '-' (it names files)"
            )
        self.out = Path(options.out)
        self.units: list[Unit] = []
        self.paths: list[Path] = []

    def _plan_units(self) -> None:
        """Cut the (listed) source into units; the shard paths follow."""
        self.units = self.source.units(self.options.shard_size, self.options.limit)
        if not self.units:
            raise ShowoError(f"source {self.source.spec} holds no inputs")
        self.paths = [self.out / f"{self.name}-{u.index:06d}.tar" for u in self.units]

    def settings(self) -> dict:
        """What shard bytes depend on; a rerun must match it exactly (checked against build.json)."""
        o = self.options
        return {
            "source": self.source.spec,
            "source_fingerprint": self.source.fingerprint(),
            "name": self.name,
            "shard_size": o.shard_size,
            "limit": o.limit,
            "units": len(self.units),
            "resolution": o.resolution,
            "grid": self.grid,
            "image_format": self.encoder.image_format,
            self.encoder.settings_key: self.encoder.describe(),
            "transform": {
                "name": "showo_transform",
                "resize": "bicubic short side",
                "crop": "center",
                "range": [-1, 1],
            },
            "captioner": self.captioner.describe(),
            "dedup": o.dedup,
            "min_size": o.min_size,
            "max_pixels": o.max_pixels,
            "max_caption_chars": o.max_caption_chars,
            "batch_size": o.batch_size,
            # a GPU's convolutions differ from the CPU's in the last bits, enough to flip an LFQ sign near 0
            # (99.5% of codes agree at the official size) or a latent's last float16 bit: a build does not
            # mix shards of both
            "encoder_device": self.device.type,
        }

    def run(self) -> dict:
        """Lock the output directory, check or record the settings, encode the missing shards of this
        partition, and assemble the dataset files when every shard is there."""
        announce(self.resources, self.resources_note, self.rank, self.world_size, self.options.progress)
        make_output_dir(self.out)
        check_unrecorded(self.out)
        with partition_lock(self.out, self.rank, self.world_size):
            with metadata_lock(self.out):  # the first partition lists a directory source, the others reuse it
                self.source.attach(self.out, relist=self.options.verify)
            self._plan_units()
            settings = self.settings()
            with metadata_lock(self.out):
                remove_temporaries(self.out / BUILD_FILE)
                check_build(self.out, settings)
            mine = [u for u in self.units if u.index % self.world_size == self.rank]
            remove_stale_temporaries(self.out, {self.paths[u.index].name for u in mine})
            todo = [u for u in mine if finished_record(self.paths[u.index], self.options.verify) is None]
            if todo:
                self._encode_units(todo)
            with metadata_lock(self.out):
                for name in (*DATASET_FILES, FINISHED_FILE):
                    remove_temporaries(self.out / name)
                report = finalize(self.out, settings, self.paths)
                if report is not None:
                    record_finished(self.out, self.options, self.source, [p.name for p in self.paths])
        if report is None:
            return {"partition": [self.rank, self.world_size], "shards_done": len(mine), "complete": False}
        return report

    def _encode_units(self, todo: list[Unit]) -> None:
        o = self.options
        prep = PrepareOptions(
            resolution=o.resolution,
            min_size=o.min_size,
            max_pixels=o.max_pixels,
            max_caption_chars=o.max_caption_chars,
            needs_caption=self.captioner.needs_caption,
            needs_template=self.captioner.needs_template,
            keep_rgb=self.captioner.needs_rgb,
        )
        loader = DataLoader(
            PrepareDataset(self.source, todo, prep),
            batch_size=None,
            num_workers=min(self.resources["workers"], len(todo)),
            collate_fn=passthrough,
        )
        known = [u.size for u in todo]
        total = None if None in known else sum(known)
        bar = tqdm(
            total=total, unit="img", desc=f"showo-data {self.name}", disable=not o.progress, file=sys.stderr
        )
        states: dict[int, _UnitState] = {}
        written: list[str] = []

        def shard_done(record: dict) -> None:
            written.append(record["shard"])
            bar.set_postfix(shards=f"{len(written)}/{len(todo)}", refresh=False)

        writer = BackgroundWriter(on_done=shard_done)
        try:
            for item in loader:
                if isinstance(item, SourceFailed):
                    raise ShowoError(item.message)
                if isinstance(item, UnitEnd):
                    state = states.pop(item.unit, None) or _UnitState(self.units[item.unit], time.time())
                    writer.submit(self._finish(state, item.inputs))
                    continue
                state = states.setdefault(item.unit, _UnitState(self.units[item.unit], time.time()))
                self._accept(state, item)
                bar.update(1)
                failpoint("input")
        except BaseException:
            writer.stop()  # the shards already handed over are finished; the first error propagates
            raise
        finally:
            bar.close()
        writer.close()

    def _accept(self, state: _UnitState, item: Prepared) -> None:
        if item.reject is not None:
            reason, detail = item.reject
            state.dropped.append(
                {"position": item.position, "source": item.source, "reason": reason, "detail": detail}
            )
            return
        if self.options.dedup != "none":
            first = state.seen_sha1.get(item.sha1)
            if first is not None:
                state.dropped.append(
                    {
                        "position": item.position,
                        "source": item.source,
                        "reason": "duplicate",
                        "detail": f"sha1 of {first}",
                    }
                )
                return
            state.seen_sha1[item.sha1] = item.source
        state.pending.append(item)
        if len(state.pending) >= self.options.batch_size:
            self._flush(state)

    def _flush(self, state: _UnitState) -> None:
        """Encode (and recaption) the pending inputs of one unit as one batch, then turn them into samples."""
        batch, state.pending = state.pending, []
        if not batch:
            return
        images = self._encode([p.pixels for p in batch])
        texts: list[str | None] = [None] * len(batch)
        visual = [i for i, p in enumerate(batch) if p.pixels is not None]
        if visual and (self.captioner.needs_rgb or self.captioner.needs_template):
            made = self.captioner.recaption(
                [batch[i].rgb for i in visual], [batch[i].template for i in visual]
            )
            for i, text in zip(visual, made):
                texts[i] = text
        for item, image, text in zip(batch, images, texts):
            self._add_sample(state, item, image, text)

    def _encode(self, pixels: list[torch.Tensor | None]) -> list[np.ndarray | None]:
        """All frames of the batch in one encoder call; returns the F frames' stored arrays per input
        ([F, h*w] uint16 codes or [F, C, h, w] float16 latents; None: text)."""
        present = [p for p in pixels if p is not None]
        if not present:
            return [None] * len(pixels)
        if self.device.type == "cuda":  # the batch is assembled in pinned pages: an asynchronous DMA copy
            shape = (sum(p.shape[0] for p in present), *present[0].shape[1:])
            pinned = torch.empty(shape, dtype=present[0].dtype, pin_memory=True)
            pixels_in = torch.cat(present, out=pinned).to(self.device, non_blocking=True)
        else:
            pixels_in = torch.cat(present)
        with torch.inference_mode():
            flat = self.encoder.encode(pixels_in)
        out, offset = [], 0
        for p in pixels:
            if p is None:
                out.append(None)
                continue
            frames = flat[offset : offset + p.shape[0]]
            offset += p.shape[0]
            out.append(frames)
        return out

    def _add_sample(
        self, state: _UnitState, item: Prepared, frames: np.ndarray | None, recaption: str | None
    ) -> None:
        """One image is stored as its frame ([h*w] codes, [C, h, w] latents), a keyframe sequence (task
        `mixed`) as all its frames ([F, h*w], [F, C, h, w])."""
        image = frames if frames is None or item.task == "mixed" else frames[0]
        key = f"{self.name}-{state.unit.index:06d}-{item.position:06d}"
        drop = {"position": item.position, "source": item.source}
        if image is not None and self.options.dedup == "codes":
            position, first = state.seen_codes.setdefault(image.tobytes(), (item.position, item.source))
            if position != item.position:
                state.dropped.append({**drop, "reason": "duplicate", "detail": f"codes of {first}"})
                return
        if recaption is not None and not recaption.strip():
            state.dropped.append({**drop, "reason": EMPTY_RECAPTION, "detail": self.captioner.id})
            return
        txt = item.caption if recaption is None else recaption
        meta: dict = {"task": item.task, "source": item.source}
        captions = None
        if image is not None:
            meta.update(orig_size=item.orig_size, crop=item.crop, sha1=item.sha1, grid=self.grid)
            recaptions = (
                []
                if recaption is None
                else [{"captioner": self.captioner.id, "prompt": self.captioner.prompt, "text": recaption}]
            )
            captions = {"original": item.caption, "recaptions": recaptions}
            state.images += len(image) if item.task == "mixed" else 1
        else:
            meta.update(sha1=item.sha1, chars=len(txt or ""))
        meta.update(item.meta)
        state.samples.append(EncodedSample(key, txt or "", meta, image, captions, self.encoder.member))
        state.tasks[item.task] += 1

    def _finish(self, state: _UnitState, inputs: int) -> ShardJob:
        self._flush(state)
        unit = state.unit
        span = {"spec": self.source.spec, "unit": unit.index}
        span.update({"tar": Path(unit.path).name} if unit.path else {"start": unit.start, "stop": unit.stop})
        record = {
            "unit": unit.index,
            "source": span,
            "inputs": inputs,
            "tasks": dict(sorted(state.tasks.items())),
            "dropped": sorted(state.dropped, key=lambda d: d["position"]),
            "images": state.images,
            "sha1": {sample.key: sample.meta["sha1"] for sample in state.samples},
            "started": state.started,
            "finished": time.time(),
            "resources": self.resources,
        }
        return ShardJob(self.paths[unit.index], state.samples, record)


def build(options: BuildOptions) -> dict:
    """Run one partition of a build (see the module docstring); returns report.json's content when done.
    torch's CPU threads are set to the partition's share for the duration (see `data_engine.resources`)."""
    previous = torch.get_num_threads()
    try:
        builder = Builder(options)
        torch.set_num_threads(builder.resources["threads"])
        return builder.run()
    finally:
        torch.set_num_threads(previous)
