"""The DataLoader side of a build: read, decode, check and transform inputs in worker processes.

Each worker takes whole units (shards) and yields their inputs in order, then an end marker, so the
main process can batch and encode per unit while decoding runs in parallel across units.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image
from torch.utils.data import IterableDataset, get_worker_info

from data_engine.decode import Reject, decode_image
from data_engine.sources import RawSample, Source, Unit
from showo.errors import ShowoError
from showo.tokenizer.transform import showo_transform

MISSING_CAPTION = "missing_caption"
CAPTION_TOO_LONG = "caption_too_long"
NO_TEMPLATE = "no_template_caption"
UNEXPECTED = "unexpected_error"  # counted like any reason, so a systematic failure shows in report.json


@dataclass(frozen=True)
class PrepareOptions:
    """What workers need to know: the target resolution and the input filters."""

    resolution: int
    min_size: int = 32
    max_pixels: int | None = None
    max_caption_chars: int = 8192
    needs_caption: bool = True
    needs_template: bool = False
    keep_rgb: bool = False


@dataclass
class Prepared:
    """One input after the worker: transformed pixels [F,3,R,R] (None for text), or a reject."""

    unit: int
    position: int
    source: str
    task: str
    pixels: torch.Tensor | None = None
    orig_size: list[int] | None = None
    crop: dict | None = None
    sha1: str = ""
    caption: str | None = None
    template: str | None = None
    meta: dict = field(default_factory=dict)
    rgb: list[np.ndarray] | None = None
    reject: tuple[str, str] | None = None


@dataclass
class UnitEnd:
    """Sent after the last input of a unit: `inputs` is how many inputs it had."""

    unit: int
    inputs: int


@dataclass
class SourceFailed:
    """Sent when the source itself fails in a worker (its index file vanished or became unreadable):
    the build stops with this one line instead of a worker traceback."""

    message: str


def _sha1_of_images(images: list[Image.Image]) -> str:
    digest = hashlib.sha1()
    for image in images:
        digest.update(f"{image.mode}{image.size}".encode())
        digest.update(image.tobytes())
    return digest.hexdigest()


def prepare(raw: RawSample, unit: int, options: PrepareOptions) -> Prepared:
    """Turn one raw input into transformed pixels plus metadata; every failure becomes a reject."""
    out = Prepared(
        unit, raw.position, raw.source, raw.task, caption=raw.caption, template=raw.template, meta=raw.meta
    )
    try:
        if raw.reject is not None:
            raise raw.reject
        _check_text(raw, options)
        if raw.data is not None:
            out.sha1 = hashlib.sha1(raw.data).hexdigest()
            images = [decode_image(raw.data, min_size=options.min_size, max_pixels=options.max_pixels)]
        elif raw.images is not None:
            images = [img.convert("RGB") for img in raw.images]  # generated data: no size filter
            out.sha1 = _sha1_of_images(images)
        else:
            out.sha1 = hashlib.sha1((raw.caption or "").encode("utf-8")).hexdigest()
            return out
        pixels, crops = zip(*(showo_transform(img, options.resolution) for img in images))
        out.pixels = torch.stack(pixels)
        out.crop = crops[0]
        out.orig_size = list(images[0].size)
        if options.keep_rgb:
            out.rgb = [np.asarray(img) for img in images]
    except Reject as reject:
        out.reject = (reject.reason, reject.detail)
        out.meta = {}
    except Exception as err:  # noqa: BLE001 - one odd input must not stop a billion-image build
        out.reject = (UNEXPECTED, f"{type(err).__name__}: {err}")
        out.meta = {}
    return out


def _check_text(raw: RawSample, options: PrepareOptions) -> None:
    if raw.task == "lm":
        return
    if options.needs_template and raw.template is None:
        raise Reject(NO_TEMPLATE, "the template captioner needs a source that knows its exact captions")
    if options.needs_caption and (raw.caption is None or not raw.caption.strip()):
        raise Reject(MISSING_CAPTION)
    if raw.caption is not None and len(raw.caption) > options.max_caption_chars:
        raise Reject(CAPTION_TOO_LONG, f"{len(raw.caption)} characters > {options.max_caption_chars}")


class PrepareDataset(IterableDataset):
    """Yields `Prepared` inputs unit by unit, each worker taking every `num_workers`-th unit."""

    def __init__(self, source: Source, units: list[Unit], options: PrepareOptions):
        super().__init__()
        self.source, self.units, self.options = source, units, options

    def __iter__(self):
        info = get_worker_info()
        mine = self.units if info is None else self.units[info.id :: info.num_workers]
        for unit in mine:
            count = 0
            try:
                for raw in self.source.samples(unit, self.options.resolution):
                    yield prepare(raw, unit.index, self.options)
                    count += 1
            except ShowoError as err:
                yield SourceFailed(str(err))
                return
            except OSError as err:
                yield SourceFailed(f"cannot read source {self.source.spec}: {err.strerror or err}")
                return
            yield UnitEnd(unit.index, count)


def passthrough(item: object) -> object:
    """DataLoader collate function: items travel as they are (tensors go through shared memory)."""
    return item
