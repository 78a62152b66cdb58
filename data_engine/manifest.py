"""The dataset-level files: `build.json` (the settings every shard was made with), `manifest.jsonl`
(one line per shard), `report.json` (what happened to every input), `dropped.jsonl` (each input that
was not written, with its reason) and `duplicates_across_shards.jsonl` (written samples whose sha1 an
earlier shard already holds). Assembled from per-shard records once every shard exists, by
whichever partition finishes last, so they are the same however the work was split.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from data_engine.listing import is_index_file
from data_engine.outdir import is_lock_file
from data_engine.writer import atomic_write, dumps_json, record_path, temporary, write_error
from showo.errors import ShowoError
from showo.safeio import loads_json

BUILD_FILE = "build.json"
MANIFEST_FILE = "manifest.jsonl"
REPORT_FILE = "report.json"
DROPPED_FILE = "dropped.jsonl"
REPEATS_FILE = "duplicates_across_shards.jsonl"
INDEX_FILE = "finalize.sqlite"
OUTPUT_FILES = (MANIFEST_FILE, REPORT_FILE, DROPPED_FILE, REPEATS_FILE)
"""What a complete build holds besides its shards and records."""
DATASET_FILES = (*OUTPUT_FILES, INDEX_FILE)
MANIFEST_KEYS = ("image_format", "tokenizer", "vae", "transform", "resolution", "grid", "captioner")
"""The build settings every manifest line repeats (those present: a build has a tokenizer or a VAE)."""
CACHE_KIB = 32 * 1024
"""SQLite's page cache for the repeats index: the memory finalize may use, whatever the build's size."""


def check_build(out: Path, settings: dict) -> None:
    """Record the build settings, or refuse to mix shards made with different ones into one directory.

    A directory without build.json must be empty (lock files aside): shards whose record is gone could
    have been made with any settings, and a build that added to them would then verify as consistent.
    """
    path = out / BUILD_FILE
    if path.is_file():
        try:
            previous = loads_json(path.read_bytes())
        except OSError as err:
            raise ShowoError(f"cannot read {path}: {err.strerror or err}") from None
        except (json.JSONDecodeError, UnicodeDecodeError):
            previous = None
        if not isinstance(previous, dict):
            previous = None
        elif "image_format" not in previous and "tokenizer" in previous:
            previous = {**previous, "image_format": "codes"}  # written before builds could store latents
        if previous != settings:
            changed = sorted(k for k in settings if previous is None or previous.get(k) != settings.get(k))
            raise ShowoError(
                f"{out} holds shards built with other settings ({', '.join(changed) or 'unreadable build.json'}); "
                "use a new --out directory"
            )
        return
    check_unrecorded(out)
    atomic_write(path, dumps_json(settings))


def check_unrecorded(out: Path) -> None:
    """Refuse a directory that holds files but no build.json (called again before taking the lock, so a
    refused directory is left exactly as it was). Lock files, source listings and a build.json being
    written by a partition that started first do not count."""
    try:
        names = {p.name for p in out.iterdir()}
    except OSError as err:
        raise ShowoError(f"cannot list {out}: {err.strerror or err}") from None
    if BUILD_FILE in names:
        return
    build_temporary = re.compile(rf"{re.escape(Path(BUILD_FILE).stem)}\.[0-9]+-[0-9a-f]+\.json\.tmp")
    others = sorted(
        n for n in names if not is_lock_file(n) and not is_index_file(n) and not build_temporary.fullmatch(n)
    )
    if others:
        shown = ", ".join(others[:3]) + (", ..." if len(others) > 3 else "")
        raise ShowoError(
            f"{out} is not empty ({shown}) but has no {BUILD_FILE}, the record of the settings its shards "
            "were built with; use a new or empty --out directory"
        )


def _busy_seconds(spans: Iterable[tuple[float, float]]) -> float:
    """Length of the union of the records' [started, finished] intervals (given sorted): overlapping
    partitions count once and the idle gap before a resumed run does not count."""
    total, end = 0.0, float("-inf")
    for start, stop in spans:
        if stop > end:
            total += stop - max(start, end)
            end = stop
    return total


class _Index:
    """The build's sample sha1s and shard spans in an on-disk SQLite file beside the shards (not /tmp,
    which may be memory), so finding repeats across shards takes a bounded page cache however many
    samples there are; the sort happens in SQLite's external sorter."""

    def __init__(self, out: Path):
        self.path = temporary(out / INDEX_FILE)
        self.db = sqlite3.connect(self.path, isolation_level=None)
        for pragma in ("journal_mode=OFF", "synchronous=OFF", "temp_store=FILE", f"cache_size=-{CACHE_KIB}"):
            self.db.execute(f"PRAGMA {pragma}")
        self.db.execute("BEGIN")
        self.db.execute(
            "CREATE TABLE samples(seq INTEGER PRIMARY KEY, sha1 TEXT NOT NULL, key TEXT NOT NULL)"
        )
        self.db.execute("CREATE TABLE spans(started REAL NOT NULL, finished REAL NOT NULL)")
        self.count = 0

    def add(self, record: dict) -> None:
        items = record["sha1"]
        rows = ((self.count + i, sha1, key) for i, (key, sha1) in enumerate(items.items()))
        self.db.executemany("INSERT INTO samples VALUES (?, ?, ?)", rows)
        self.count += len(items)
        if "started" in record:
            self.db.execute("INSERT INTO spans VALUES (?, ?)", (record["started"], record["finished"]))

    def spans(self) -> Iterator[tuple[float, float]]:
        yield from self.db.execute("SELECT started, finished FROM spans ORDER BY started, finished")

    def repeats(self) -> Iterator[dict]:
        """Written samples whose sha1 an earlier shard already holds, in shard order (a repeat inside the
        shard of the first occurrence was dropped or kept by the shard's own dedup, so it is not listed)."""
        self.db.execute("CREATE INDEX by_sha1 ON samples(sha1, seq, key)")
        rows = self.db.execute(
            "SELECT key, sha1, first FROM ("
            " SELECT seq, key, sha1, first_value(key) OVER w AS first, row_number() OVER w AS nth"
            " FROM samples WINDOW w AS (PARTITION BY sha1 ORDER BY seq)"
            ") WHERE nth > 1 ORDER BY seq"
        )
        for key, sha1, first in rows:
            if first.rsplit("-", 1)[0] != key.rsplit("-", 1)[0]:
                yield {"key": key, "sha1": sha1, "first": first}

    def close(self) -> None:
        self.db.close()
        self.path.unlink(missing_ok=True)


class _Staged:
    """The dataset files written to temporaries as records stream by, renamed into place together at the
    end (in the order the in-memory version wrote them) or discarded when a record is missing."""

    def __init__(self, out: Path, names: tuple[str, ...]):
        self.targets = [out / name for name in names]
        self.temporaries = [temporary(path) for path in self.targets]
        self.handles: dict[str, BinaryIO] = {}
        try:
            for name, tmp in zip(names, self.temporaries):
                self.handles[name] = open(tmp, "wb")  # noqa: SIM115 - closed in commit/discard
        except OSError as err:
            self.discard()
            raise write_error("", out / name, err) from None

    def write(self, name: str, line: bytes) -> None:
        self.handles[name].write(line + b"\n")

    def commit(self) -> None:
        try:
            for handle in self.handles.values():
                handle.flush()
                os.fsync(handle.fileno())
                handle.close()
            for tmp, path in zip(self.temporaries, self.targets):
                os.replace(tmp, path)
        except OSError as err:
            self.discard()
            raise write_error("", self.targets[0].parent, err) from None

    def discard(self) -> None:
        for handle in self.handles.values():
            handle.close()
        for tmp in self.temporaries:
            tmp.unlink(missing_ok=True)


def _read_record(path: Path) -> dict | None:
    try:
        return loads_json(record_path(path).read_bytes())
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    except OSError as err:
        raise ShowoError(f"cannot read {record_path(path)}: {err.strerror or err}") from None


def finalize(out: Path, settings: dict, shard_paths: list[Path]) -> dict | None:
    """Write manifest.jsonl, report.json, dropped.jsonl and duplicates_across_shards.jsonl when every shard
    has its record; None otherwise. Records are read one at a time (memory does not grow with the build):
    totals are counters, lines go straight to temporaries, sha1s to an on-disk index."""
    if not all(record_path(path).is_file() for path in shard_paths):
        return None  # a partition is still running: do not read anything yet
    staged = _Staged(out, (MANIFEST_FILE, DROPPED_FILE, REPEATS_FILE))
    index = _Index(out)
    reasons: Counter[str] = Counter()
    tasks: Counter[str] = Counter()
    totals: Counter[str] = Counter()
    resources: list[dict] = []
    try:
        for path in shard_paths:
            record = _read_record(path)
            if record is None:
                staged.discard()
                return None
            entry = {
                "shard": record["shard"],
                "samples": record["samples"],
                "sha256": record["sha256"],
                "bytes": record["bytes"],
                **{k: settings[k] for k in MANIFEST_KEYS if k in settings},
                "source": record["source"],
                "inputs": record["inputs"],
                "tasks": record["tasks"],
            }
            staged.write(MANIFEST_FILE, dumps_json(entry))
            for item in record["dropped"]:
                staged.write(DROPPED_FILE, dumps_json({"shard": record["shard"], **item}))
                if item["reason"] != "duplicate":
                    reasons[item["reason"]] += 1
                else:
                    totals["duplicates"] += 1
            tasks.update(record["tasks"])
            for name in ("inputs", "samples", "images", "bytes"):
                totals[name] += record[name]
            if "resources" in record and record["resources"] not in resources:
                resources.append(record["resources"])
            index.add(record)
        repeats = 0
        for repeat in index.repeats():
            staged.write(REPEATS_FILE, dumps_json(repeat))
            repeats += 1
        busy = _busy_seconds(index.spans())
    except OSError as err:
        staged.discard()
        raise write_error("dataset files in ", out, err) from None
    except sqlite3.Error as err:
        staged.discard()
        raise ShowoError(f"cannot write {index.path}: {err}") from None
    except BaseException:
        staged.discard()
        raise
    finally:
        index.close()
    report = {
        "source": settings["source"],
        "inputs": totals["inputs"],
        "written": totals["samples"],
        "rejected": sum(reasons.values()),
        "rejected_by_reason": dict(sorted(reasons.items())),
        "duplicates": totals["duplicates"],
        "duplicates_across_shards": repeats,
        "dedup": settings["dedup"],
        "shards": len(shard_paths),
        "tasks": dict(sorted(tasks.items())),
        "images": totals["images"],
        "images_per_s": round(totals["images"] / busy, 3) if busy > 0 else None,
        "bytes": totals["bytes"],
    }
    if resources:
        report["resources"] = resources
    staged.commit()
    atomic_write(out / REPORT_FILE, json.dumps(report, indent=2).encode() + b"\n")
    return report


def read_manifest(directory: str | Path) -> tuple[Path, list[dict]]:
    """The shard directory and its manifest lines; a missing or partial build is a `ShowoError`."""
    root = Path(directory)
    path = root / MANIFEST_FILE
    if not root.is_dir():
        raise ShowoError(f"shard directory {root} does not exist")
    if not path.is_file():
        raise ShowoError(f"{root} has no {MANIFEST_FILE} (the build has not finished on every partition)")
    try:
        entries = [loads_json(line) for line in path.read_text().splitlines() if line.strip()]
    except OSError as err:
        raise ShowoError(f"cannot read {path}: {err.strerror or err}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ShowoError(f"{path} is not valid JSON lines: {err}") from None
    if not entries:
        raise ShowoError(f"{path} lists no shards")
    return root, entries
