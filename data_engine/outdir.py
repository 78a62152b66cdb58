"""The output directory of a build: created with a clear error, and locked so that two builds never write
into it at once.

Partitions of one build (torchrun, SLURM) legitimately share the directory, so the lock is two-level:
`.lock` is held exclusively by an unpartitioned build and shared by partitions, and each partition
holds `.lock.<rank>-of-<world>` exclusively (with its process id inside, for the error message).
Partitions with different world sizes may overlap on a shard; they write identical bytes under their
own temporary names, so the result is the same. The dataset-level files (`build.json`, the manifest
and report) are read and written under `.lock.meta`, taken briefly and blockingly.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from showo.errors import ShowoError

LOCK_FILE = ".lock"
META_LOCK = f"{LOCK_FILE}.meta"


def make_output_dir(out: Path) -> None:
    """Create `--out` (and its parents); a file in its place or a read-only parent is one line."""
    if out.exists() and not out.is_dir():
        raise ShowoError(f"--out {out} exists and is not a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ShowoError(f"cannot create output directory {out}: {err.strerror or err}") from None


def _open_lock(path: Path) -> int:
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as err:
        raise ShowoError(f"cannot write to output directory {path.parent}: {err.strerror or err}") from None


def _flock(fd: int, mode: int, out: Path) -> None:
    try:
        fcntl.flock(fd, mode | fcntl.LOCK_NB)
    except BlockingIOError:
        raise ShowoError(f"{out} is being written by another build (pid {_holders(out)})") from None
    except OSError as err:
        raise ShowoError(f"cannot lock output directory {out}: {err.strerror or err}") from None


def _holders(out: Path) -> str:
    """The process ids written into the partition lock files that are held right now."""
    pids = []
    for path in sorted(out.glob(f"{LOCK_FILE}.*-of-*")):
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.read(fd, 32).decode("ascii", "replace").strip()
            pids.extend([text] if text.isdigit() else [])
        finally:
            os.close(fd)
    return ", ".join(pids) or "unknown"


@contextmanager
def partition_lock(out: Path, rank: int, world_size: int) -> Iterator[None]:
    """Held for the whole run of one partition; a second build into the directory gets a one-line error
    naming the process that holds it (an unpartitioned build excludes every other build)."""
    fds: list[int] = []
    try:
        fds.append(_open_lock(out / LOCK_FILE))
        _flock(fds[-1], fcntl.LOCK_EX if world_size == 1 else fcntl.LOCK_SH, out)
        fds.append(_open_lock(out / f"{LOCK_FILE}.{rank}-of-{world_size}"))
        _flock(fds[-1], fcntl.LOCK_EX, out)
        try:
            os.ftruncate(fds[-1], 0)
            os.write(fds[-1], f"{os.getpid()}\n".encode())
        except OSError as err:
            raise ShowoError(f"cannot write to output directory {out}: {err.strerror or err}") from None
        yield
    finally:
        for fd in reversed(fds):
            os.close(fd)


@contextmanager
def metadata_lock(out: Path) -> Iterator[None]:
    """Serialises partitions reading and writing build.json, the manifest and the report."""
    fd = _open_lock(out / META_LOCK)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def is_lock_file(name: str) -> bool:
    return name == LOCK_FILE or name.startswith(f"{LOCK_FILE}.")
