"""The one shard reader: training streams, TensorBoard previews, `showo-data inspect` and `stats` all read
shards through it, so a shard downloaded from a stranger is data only, whatever reads it.

webdataset's default decoders unpickle `.pyd`/`.pkl` members and torch-load `.pth` ones, so a hostile
shard runs code the moment it is decoded. Here every member is decoded by a handler that knows only the
members the shard contract names (docs/interfaces.md): `codes.npy` and `latents.npy` through
`np.load(allow_pickle=False)`, `txt` as UTF-8, `json` and `captions.json` as JSON objects. Any other member
(and webdataset's gzip pre-handler, which would inflate `*.gz` members) is refused with one line naming the
shard and the member. Image codes are then checked (integer dtype, range 0..K-1, the expected token grid)
before anything hands them to a model, a tokenizer decoder or `np.bincount`.

Shards are opened one at a time with webdataset's own `tarfile_samples`, so a shard that vanished, is not a
tar or holds two members of one name stops the reader with the shard's name instead of a traceback.
"""

from __future__ import annotations

import io
import json
import lzma
import os
import tarfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import webdataset as wds
from webdataset.autodecode import DecodingError

from showo.errors import ShowoError
from showo.safeio import loads_json

SAMPLE_FIELDS = ("__key__", "__url__")
"""What webdataset adds to each sample: the key (member name up to the first dot) and the shard."""


class _Refused(Exception):
    """A member the contract does not allow, or one whose bytes are not what its name says."""


def _array(data: bytes) -> np.ndarray:
    try:
        return np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise _Refused(f"is not a plain numpy array ({reason})") from None


def _latents(data: bytes) -> np.ndarray:
    latents = _array(data)
    if latents.dtype != np.float16:
        raise _Refused(f"holds {latents.dtype} values, the shard contract says float16")
    return latents


def _text(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise _Refused(f"is not UTF-8 text ({err.reason} at byte {err.start})") from None


def _object(data: bytes) -> dict:
    try:
        value = loads_json(_text(data))
    except json.JSONDecodeError as err:
        raise _Refused(f"is not valid JSON ({err.msg} at line {err.lineno})") from None
    if not isinstance(value, dict):
        raise _Refused(f"must be a JSON object, got {type(value).__name__}")
    return value


MEMBER_DECODERS: dict[str, Callable[[bytes], Any]] = {
    "codes.npy": _array,
    "latents.npy": _latents,
    "txt": _text,
    "json": _object,
    "captions.json": _object,
}
"""Member name (after the sample key) -> its data-only decoder; nothing else is ever decoded."""


def decode_member(key: str, data: bytes) -> Any:
    """webdataset decoder handler (`key` is "." + member suffix): a contract member, or a refusal."""
    decoder = MEMBER_DECODERS.get(key[1:])
    if decoder is None:
        raise _Refused(f"is not a member the shard contract names ({', '.join(MEMBER_DECODERS)})")
    return decoder(data)


def _decoding_failed(exn: Exception) -> bool:
    """webdataset exception handler of the decode stage: one line naming the shard and the member."""
    if isinstance(exn, DecodingError) and isinstance(exn.__cause__, _Refused):
        raise ShowoError(f"shard {exn.url}: member {exn.key}.{exn.k} {exn.__cause__}") from None
    raise exn


@dataclass(frozen=True)
class CodeSpec:
    """What valid image codes look like: ids in 0..codebook_size-1, `tokens` (h*w) per image, raster order."""

    codebook_size: int
    tokens: int
    frames: bool = True
    """Whether a keyframe sequence [F, h*w] is allowed besides a single image [h*w]."""

    def problem(self, codes: np.ndarray) -> str | None:
        """Why `codes` cannot be fed to a model, or None when they can."""
        if not np.issubdtype(codes.dtype, np.integer):
            return f"codes have dtype {codes.dtype}, the shard contract needs integers (uint16)"
        shapes = f"[{self.tokens}]" + (f" or [F, {self.tokens}]" if self.frames else "")
        if codes.ndim not in ((1, 2) if self.frames else (1,)) or codes.shape[-1] != self.tokens:
            return f"codes have shape {list(codes.shape)}, the grid needs {shapes}"
        if codes.size == 0:
            return "codes hold no frames"
        low, high = int(codes.min()), int(codes.max())
        if low < 0 or high >= self.codebook_size:
            bad = low if low < 0 else high
            return (
                f"codes hold {bad}, outside 0..{self.codebook_size - 1} (codebook size {self.codebook_size})"
            )
        return None


def checked(spec: CodeSpec | None) -> Callable[[dict], dict]:
    """A `wds.map` function: refuses fields webdataset did not add and codes that do not fit `spec`."""

    def check(sample: dict) -> dict:
        shard, key = sample.get("__url__"), sample.get("__key__")
        for name in sample:
            if name.startswith("__") and name not in SAMPLE_FIELDS:
                raise ShowoError(
                    f"shard {shard}: member {key}.{name} is not a member the shard contract names"
                    f" ({', '.join(MEMBER_DECODERS)})"
                )
        if spec is not None and "codes.npy" in sample:
            problem = spec.problem(sample["codes.npy"])
            if problem is not None:
                raise ShowoError(f"shard {shard}: sample {key!r}: {problem}")
        return sample

    return check


READ_ERRORS = (OSError, EOFError, ValueError, tarfile.TarError, zlib.error, lzma.LZMAError)
"""What reading a missing, truncated, compressed-garbage or malformed tar raises (inside webdataset)."""


def shard_samples(src: Iterable[dict]) -> Iterator[dict]:
    """Pipeline stage: {"url": path} -> the raw samples of each shard, via webdataset's `tarfile_samples`.

    Paths are made absolute so that webdataset's `gopen` opens them as files whatever their name (a file
    named "pipe:..." would otherwise run as a shell command). Read errors name the shard."""
    for source in src:
        url = os.path.abspath(source["url"])
        try:
            yield from wds.tarfile_samples([{**source, "url": url}])
        except FileNotFoundError:
            raise ShowoError(f"shard {url} is gone (deleted or moved while it was in use)") from None
        except READ_ERRORS as err:
            if isinstance(err, OSError) and err.strerror:
                reason = err.strerror
            else:  # webdataset appends " @ <stream>" to the first argument
                reason = str(err.args[0]).split(" @ ")[0].splitlines()[0] if err.args else type(err).__name__
            raise ShowoError(f"shard {url} is not a readable shard: {reason}") from None


shard_samples_stage = wds.pipelinefilter(shard_samples)


def decode_stages(spec: CodeSpec | None) -> list[Any]:
    """The stages after raw samples: data-only decoding of contract members, then the checks."""
    return [
        wds.decode(decode_member, pre=[], post=[], handler=_decoding_failed),
        wds.map(checked(spec)),
    ]


def read_shards(urls: Iterable[str], spec: CodeSpec | None) -> wds.DataPipeline:
    """Every sample of `urls`, in order, decoded and checked (inspect, stats and previews)."""
    return wds.DataPipeline(
        wds.SimpleShardList(list(urls)),
        shard_samples_stage(),
        *decode_stages(spec),
    )
