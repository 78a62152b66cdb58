"""Directory walking and jsonl line indexing as they were before issue 19 (in memory, per shard), kept
verbatim as the reference that the on-disk listing and the checkpointed line index must match: the same
entries, reasons and sizes in the same order, the same lines, the same fingerprints. Test-only."""

from __future__ import annotations

import hashlib
import json
import stat
from pathlib import Path, PurePosixPath

from data_engine.decode import UNREADABLE, Reject
from data_engine.paths import NOT_A_FILE, ORPHAN_CAPTION, UNSUPPORTED_TYPE, Entry, _classify, _ext, _scan
from data_engine.sources import BAD_JSON
from showo.errors import ShowoError


def walk(
    root: Path, wanted: frozenset[str], companions: frozenset[str] = frozenset(), under: str = ""
) -> list[Entry]:
    """Every entry under the real directory `root` (or its subfolder `under`), sorted by path relative to
    `root`: files with a `wanted` extension to read, and every entry that is neither wanted nor a
    companion (a caption next to an image) with the reason it is skipped. Companions without an image
    of the same stem are skipped too."""
    entries: list[Entry] = []
    companion_entries: list[Entry] = []

    def visit(directory: Path, prefix: str) -> None:
        try:
            items = _scan(directory)
        except ShowoError:
            if not prefix:
                raise
            entries.append(Entry(prefix.rstrip("/"), UNREADABLE, "cannot list the folder"))
            return
        for item in items:
            rel = prefix + item.name
            extension = _ext(item.name)
            reason, detail, info = _classify(root, directory / item.name, item.is_symlink())
            if info is not None and stat.S_ISDIR(info.st_mode):
                if extension in wanted:
                    entries.append(Entry(rel, NOT_A_FILE, "a directory named like an image"))
                visit(directory / item.name, rel + "/")
                continue
            if reason is None and not stat.S_ISREG(info.st_mode):
                reason, detail = NOT_A_FILE, "not a regular file"
            if extension in companions:
                companion_entries.append(Entry(rel, reason, detail))
            elif reason is None and extension not in wanted:
                entries.append(Entry(rel, UNSUPPORTED_TYPE, f"extension {extension!r}" if extension else ""))
            else:
                entries.append(Entry(rel, reason, detail, info.st_size if reason is None else 0))

    visit(root / under, f"{under}/" if under else "")
    stems = {str(PurePosixPath(e.rel).with_suffix("")) for e in entries if _ext(e.rel) in wanted}
    for entry in companion_entries:  # one with an image is read (and checked) with it
        if str(PurePosixPath(entry.rel).with_suffix("")) not in stems:
            entries.append(
                entry if entry.reason else Entry(entry.rel, ORPHAN_CAPTION, "no image of the same name")
            )
    return sorted(entries, key=lambda e: e.rel)


def digest_entries(entries: list[Entry]) -> str:
    digest = hashlib.sha1()
    for entry in entries:
        digest.update(f"{entry.rel}\0{entry.reason or entry.size}\n".encode())
    return digest.hexdigest()


def line_offsets(path: Path) -> list[int]:
    offsets, position = [], 0
    with path.open("rb") as handle:
        for line in handle:
            if line.strip():
                offsets.append(position)
            position += len(line)
    return offsets


def read_lines(path: Path, start: int, stop: int) -> list[tuple[int, object]]:
    """What a unit of lines start..stop-1 read: (line index, record or Reject)."""
    lines = list(enumerate(line_offsets(path)))[start:stop]
    out = []
    with path.open("rb") as handle:
        for number, offset in lines:
            handle.seek(offset)
            raw = handle.readline()
            try:
                out.append((number, json.loads(raw)))
            except (json.JSONDecodeError, UnicodeDecodeError) as err:
                out.append((number, Reject(BAD_JSON, f"line {number + 1}: {err}")))
    return out
