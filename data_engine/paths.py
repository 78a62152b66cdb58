"""Paths that come from untrusted places (an index file's image names, a directory listing) are resolved
against their root, and anything that would read outside it, loop or is not a regular file becomes a
`Reject` with a stable reason, so it is counted in report.json instead of being encoded or skipped silently.

An index line `{"image": "../../home/me/secret.png"}` or a symlink `x.png -> /etc/...` must never put the
pixels of a file outside `--image-root` (or the source directory) into a shard that gets published.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from data_engine.decode import UNREADABLE, Reject
from showo.errors import ShowoError

OUTSIDE_ROOT = "outside_root"
SYMLINK_LOOP = "symlink_loop"
NOT_A_FILE = "not_a_file"
UNSUPPORTED_TYPE = "unsupported_type"
ORPHAN_CAPTION = "caption_without_image"
SYMLINKED_DIRECTORY = "symlinked_directory"


def real_root(path: str | Path, what: str) -> Path:
    """The symlink-free absolute path of an existing directory (the root every name is checked against)."""
    try:
        root = Path(os.path.realpath(path, strict=True))
    except OSError as err:
        raise ShowoError(f"{what} {path}: {err.strerror or err}") from None
    if not root.is_dir():
        raise ShowoError(f"{what} {path} is not a directory")
    return root


def resolve_under(root: Path, name: str) -> Path:
    """The real path of `name` (relative to `root`, which must be real) when it is a regular file inside
    `root`; otherwise a `Reject` naming why: absolute or upward names and symlinks leading out are
    `outside_root`, loops `symlink_loop`, directories and devices `not_a_file`."""
    if "\x00" in name:
        raise Reject(UNREADABLE, "the path contains a NUL byte")
    pure = PurePosixPath(name)
    if pure.is_absolute() or ".." in pure.parts:
        raise Reject(OUTSIDE_ROOT, f"{name[:200]} is not a relative path inside the root")
    try:
        real = Path(os.path.realpath(root / pure, strict=True))
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise Reject(SYMLINK_LOOP, name[:200]) from None
        raise Reject(UNREADABLE, f"{name[:200]}: {err.strerror or err}") from None
    if not real.is_relative_to(root):
        raise Reject(OUTSIDE_ROOT, f"{name[:200]} leads outside the root")
    try:
        mode = real.stat().st_mode
    except OSError as err:
        raise Reject(UNREADABLE, f"{name[:200]}: {err.strerror or err}") from None
    if not stat.S_ISREG(mode):
        raise Reject(NOT_A_FILE, f"{name[:200]} is not a regular file")
    return real


def read_under(root: Path, name: str) -> bytes:
    """The bytes of `name` inside `root` (see `resolve_under`); the final open refuses a symlink swapped
    in after the check."""
    real = resolve_under(root, name)
    try:
        fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW)
        with open(fd, "rb") as handle:
            return handle.read()
    except OSError as err:
        raise Reject(UNREADABLE, f"{name[:200]}: {err.strerror or err}") from None


@dataclass(frozen=True)
class Entry:
    """One entry of a directory listing: a file to read (`reason` None) or a skipped entry with its reason."""

    rel: str
    reason: str | None = None
    detail: str = ""
    size: int = 0


def _classify_link(root: Path, path: Path) -> tuple[str | None, str, os.stat_result | None]:
    """A symlink is followed only to a regular file inside the root; a directory link is never descended
    (its target, when inside the root, is listed under its own path)."""
    try:
        real = Path(os.path.realpath(path, strict=True))
    except OSError as err:
        if err.errno == errno.ELOOP:
            return SYMLINK_LOOP, "the symlink loops", None
        return UNREADABLE, f"broken symlink: {err.strerror or err}", None
    if not real.is_relative_to(root):
        return OUTSIDE_ROOT, "the symlink leads outside the root", None
    info = real.stat()
    if stat.S_ISDIR(info.st_mode):
        if path.parent.is_relative_to(real):
            return SYMLINK_LOOP, "the symlink points at a folder that contains it", None
        return SYMLINKED_DIRECTORY, "not descended: its target is listed under its own path", None
    return None, "", info


def class_folders(root: Path) -> list[Entry]:
    """The top level of an imagefolder root, sorted: real subfolders are the classes (reason None); any
    other entry (a file outside the class folders, a folder symlink) is skipped with its reason."""
    entries = []
    for item in _scan(root):
        reason, detail, info = _classify(root, root / item.name, item.is_symlink())
        if info is not None and stat.S_ISDIR(info.st_mode):
            entries.append(Entry(item.name))
        else:
            entries.append(
                Entry(item.name, reason or UNSUPPORTED_TYPE, detail or "not inside a class folder")
            )
    return entries


def _scan(directory: Path) -> list[os.DirEntry]:
    try:
        with os.scandir(directory) as listing:
            return sorted(listing, key=lambda item: item.name)
    except OSError as err:
        raise ShowoError(f"cannot list {directory}: {err.strerror or err}") from None


def _classify(root: Path, path: Path, is_link: bool) -> tuple[str | None, str, os.stat_result | None]:
    """(reason or None, detail, stat of what is read): links through `_classify_link`, stat errors as
    unreadable."""
    try:
        if is_link:
            return _classify_link(root, path)
        return None, "", path.stat()
    except OSError as err:
        return UNREADABLE, err.strerror or str(err), None


def _ext(rel: str) -> str:
    return PurePosixPath(rel).suffix[1:].lower()
