"""Writing shards: webdataset's TarWriter with fixed tar metadata, a temporary name then a rename, and a
per-shard record written last, so a shard either exists completely (with its record) or is redone.

Tar members carry mtime 0, uid/gid 0 and fixed names, and every payload is encoded here with sorted
member order, so the same samples always give the same bytes (resume and partitions rely on it).
Temporary names carry the process id and a random part, so two writers never share one; a failed write
removes its temporary and becomes a one-line `ShowoError` naming the file and the system's reason.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import queue
import re
import signal
import threading
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.lib import format as npy_format

from showo.errors import ShowoError
from showo.safeio import loads_json, sha256_file

RECORDS_DIR = "records"
FAILPOINT_ENV = "SHOWO_DATA_FAILPOINT"
_FAILPOINT_PASSES: Counter[str] = Counter()


def failpoint(name: str) -> None:
    """Crash-test hook: with SHOWO_DATA_FAILPOINT=name:N the process SIGKILLs itself the N-th time it
    passes `name` (no cleanup runs, exactly like an OOM kill or a pre-empted node)."""
    spec = os.environ.get(FAILPOINT_ENV)
    if not spec or spec.partition(":")[0] != name:
        return
    _FAILPOINT_PASSES[name] += 1
    if _FAILPOINT_PASSES[name] >= int(spec.partition(":")[2] or 1):
        os.kill(os.getpid(), signal.SIGKILL)


def dumps_json(obj: object) -> bytes:
    """Compact, deterministic JSON (insertion order kept, UTF-8 kept)."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def dumps_npy(array: np.ndarray) -> bytes:
    stream = io.BytesIO()
    npy_format.write_array(stream, np.ascontiguousarray(array), allow_pickle=False)
    return stream.getvalue()


def temporary(path: Path) -> Path:
    """A name of its own for writing `path`: `<stem>.<pid>-<random><suffix>.tmp` (partitions finishing
    together may write the same file, and two builds must never write into one temporary)."""
    return path.with_name(f"{path.stem}.{os.getpid()}-{uuid.uuid4().hex[:8]}{path.suffix}.tmp")


def remove_temporaries(path: Path) -> None:
    """Delete the temporaries a killed writer of `path` left behind (call while holding its lock). One whose
    process still runs here is kept: a partition of another layout may be writing the same shard."""
    for stale in path.parent.glob(f"{glob_escape(path.stem)}.*{glob_escape(path.suffix)}.tmp"):
        pid = stale.name[len(path.stem) + 1 :].partition("-")[0]
        if not (pid.isdigit() and _running(int(pid))):
            stale.unlink(missing_ok=True)


TEMPORARY_NAME = re.compile(r"(?P<stem>[^.]+)\.(?P<pid>[0-9]+)-[0-9a-f]{8}(?P<suffix>\.[A-Za-z0-9]+)\.tmp")


def remove_stale_temporaries(out: Path, shards: set[str]) -> None:
    """`remove_temporaries` for many shards (and their records) at once: one listing of `out` and of its
    records folder, not one per shard (a resume over 100,000 shards would otherwise list them all
    100,000 times)."""
    records = {Path(name).stem + ".json" for name in shards}
    for directory, targets in ((out, shards), (out / RECORDS_DIR, records)):
        try:
            names = [entry.name for entry in os.scandir(directory) if entry.name.endswith(".tmp")]
        except FileNotFoundError:
            continue
        except OSError as err:
            raise ShowoError(f"cannot list {directory}: {err.strerror or err}") from None
        for name in names:
            match = TEMPORARY_NAME.fullmatch(name)
            if match and match["stem"] + match["suffix"] in targets and not _running(int(match["pid"])):
                (directory / name).unlink(missing_ok=True)


def _running(pid: int) -> bool:
    if pid == os.getpid():
        return False  # our own leftovers: this process is not writing them any more
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:  # someone else's process
        return True
    return pid > 0


def glob_escape(text: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in text)


def write_error(what: str, path: Path, err: OSError) -> ShowoError:
    return ShowoError(f"cannot write {what}{path}: {err.strerror or err}")


def atomic_write(path: Path, data: bytes) -> None:
    """Write to a temporary name, flush to disk, then rename over `path` (readers never see a partial file)."""
    tmp = temporary(path)
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise write_error("", path, err) from None


class _Digesting:
    """A write-only file that hashes and counts what passes through it, so a shard's sha256 and size are
    known when it is written, without reading it back."""

    def __init__(self, handle):
        self.handle = handle
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        self.size += len(data)
        return self.handle.write(data)

    def flush(self) -> None:
        self.handle.flush()


IMAGE_MEMBERS = {"codes.npy": np.dtype(np.uint16), "latents.npy": np.dtype(np.float16)}
"""The shard contract's image members and their stored dtypes."""


@dataclass
class EncodedSample:
    """One finished sample: its image as the encoder stores it under `member` (`codes.npy`: uint16
    [h*w] or [F, h*w]; `latents.npy`: float16 [C, h, w] or [F, C, h, w]), or None for text-only samples."""

    key: str
    txt: str
    meta: dict
    image: np.ndarray | None = None
    captions: dict | None = None
    member: str = "codes.npy"

    def members(self) -> dict[str, bytes | str]:
        out: dict[str, bytes | str] = {
            "__key__": self.key,
            "txt": self.txt.encode("utf-8"),
            "json": dumps_json(self.meta),
        }
        if self.image is not None:
            assert self.image.dtype == IMAGE_MEMBERS[self.member], (self.member, self.image.dtype)
            out[self.member] = dumps_npy(self.image)
        if self.captions is not None:
            out["captions.json"] = dumps_json(self.captions)
        return out


@dataclass
class ShardJob:
    """A unit's finished samples plus the bookkeeping its record needs."""

    path: Path
    samples: list[EncodedSample]
    record: dict = field(default_factory=dict)


def record_path(shard: Path) -> Path:
    return shard.parent / RECORDS_DIR / (shard.stem + ".json")


def write_shard(job: ShardJob) -> dict:
    """Write the tar under a temporary name, rename it, then write its record (the commit point)."""
    import webdataset as wds  # imports torch: only a build that writes pays for it (see data_engine.finished)

    tmp = temporary(job.path)
    try:
        with open(tmp, "wb") as handle:
            stream = _Digesting(handle)
            with wds.TarWriter(
                stream, user="showo", group="showo", mode=0o444, mtime=0, encoder=False
            ) as sink:
                for sample in job.samples:
                    sink.write(sample.members())
            handle.flush()
            os.fsync(handle.fileno())
        failpoint("shard_tmp_written")
        digest, size = stream.digest.hexdigest(), stream.size
        if tmp.stat().st_size != size:
            raise OSError(errno.EIO, "the file on disk is not the size that was written")
        os.replace(tmp, job.path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise write_error("shard ", job.path, err) from None
    failpoint("shard_renamed")
    record = {
        **job.record,
        "shard": job.path.name,
        "samples": len(job.samples),
        "bytes": size,
        "sha256": digest,
    }
    record_file = record_path(job.path)
    try:
        record_file.parent.mkdir(exist_ok=True)
    except OSError as err:
        raise write_error("", record_file.parent, err) from None
    atomic_write(record_file, dumps_json(record))
    failpoint("record_written")
    return record


def finished_record(shard: Path, verify: bool = False) -> dict | None:
    """The record of a completely written shard, or None when the shard must be (re)built: no record, a
    record for another file, or a tar whose size does not match it (a crash, a truncated copy). The tar's
    bytes are not read (resume time must not grow with what is already written) unless `verify`, which
    also compares their sha256 with the one recorded when the shard was written."""
    try:
        record = loads_json(record_path(shard).read_bytes())
        if (
            not isinstance(record, dict)
            or record.get("shard") != shard.name
            or not isinstance(record.get("sha256"), str)
            or not shard.is_file()
            or shard.stat().st_size != record.get("bytes")
        ):
            return None
        return record if not verify or sha256_file(shard) == record["sha256"] else None
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None


class BackgroundWriter:
    """Writes shards on one thread while the main thread keeps encoding; a bounded queue keeps memory flat
    and an error on the writer thread resurfaces on the next `submit`/`close`."""

    def __init__(self, on_done: Callable[[dict], None], depth: int = 2):
        self._queue: queue.Queue[ShardJob | None] = queue.Queue(maxsize=depth)
        self._on_done = on_done
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="showo-data-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (job := self._queue.get()) is not None:
            if self._error is None:
                try:
                    self._on_done(write_shard(job))
                except BaseException as err:  # noqa: BLE001 - handed to the main thread
                    self._error = err

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def submit(self, job: ShardJob) -> None:
        self._raise()
        self._queue.put(job)

    def close(self) -> None:
        self.stop()
        self._raise()

    def stop(self) -> None:
        """Let the thread finish the shard in hand and end; its error, if any, stays for `close`."""
        self._queue.put(None)
        self._thread.join()
