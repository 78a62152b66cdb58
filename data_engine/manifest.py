"""The dataset-level files: `build.json` (the settings every shard was made with), `manifest.jsonl`
(one line per shard), `report.json` (what happened to every input), `dropped.jsonl` (each input that
was not written, with its reason) and `duplicates_across_shards.jsonl` (written samples whose sha1 an
earlier shard already holds). Assembled from per-shard records once every shard exists, by
whichever partition finishes last, so they are the same however the work was split.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

from data_engine.outdir import is_lock_file
from data_engine.writer import atomic_write, dumps_json, record_path
from showo.errors import ShowoError

BUILD_FILE = "build.json"
MANIFEST_FILE = "manifest.jsonl"
REPORT_FILE = "report.json"
DROPPED_FILE = "dropped.jsonl"
REPEATS_FILE = "duplicates_across_shards.jsonl"
DATASET_FILES = (MANIFEST_FILE, REPORT_FILE, DROPPED_FILE, REPEATS_FILE)


def check_build(out: Path, settings: dict) -> None:
    """Record the build settings, or refuse to mix shards made with different ones into one directory.

    A directory without build.json must be empty (lock files aside): shards whose record is gone could
    have been made with any settings, and a build that added to them would then verify as consistent.
    """
    path = out / BUILD_FILE
    if path.is_file():
        try:
            previous = json.loads(path.read_bytes())
        except OSError as err:
            raise ShowoError(f"cannot read {path}: {err.strerror or err}") from None
        except (json.JSONDecodeError, UnicodeDecodeError):
            previous = None
        if not isinstance(previous, dict):
            previous = None
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
    refused directory is left exactly as it was). Lock files and a build.json being written by a
    partition that started first do not count."""
    try:
        names = {p.name for p in out.iterdir()}
    except OSError as err:
        raise ShowoError(f"cannot list {out}: {err.strerror or err}") from None
    if BUILD_FILE in names:
        return
    build_temporary = re.compile(rf"{re.escape(Path(BUILD_FILE).stem)}\.[0-9]+-[0-9a-f]+\.json\.tmp")
    others = sorted(n for n in names if not is_lock_file(n) and not build_temporary.fullmatch(n))
    if others:
        shown = ", ".join(others[:3]) + (", ..." if len(others) > 3 else "")
        raise ShowoError(
            f"{out} is not empty ({shown}) but has no {BUILD_FILE}, the record of the settings its shards "
            "were built with; use a new or empty --out directory"
        )


def _busy_seconds(records: list[dict]) -> float:
    """Length of the union of the records' [started, finished] intervals: overlapping partitions count
    once and the idle gap before a resumed run does not count."""
    spans = sorted((r["started"], r["finished"]) for r in records if "started" in r)
    total, end = 0.0, float("-inf")
    for start, stop in spans:
        if stop > end:
            total += stop - max(start, end)
            end = stop
    return total


def _repeats(records: list[dict]) -> list[dict]:
    """Written samples whose sha1 an earlier shard already holds (in shard order)."""
    first: dict[str, str] = {}
    repeats = []
    for record in records:
        for key, sha1 in record["sha1"].items():
            if sha1 in first and first[sha1].rsplit("-", 1)[0] != key.rsplit("-", 1)[0]:
                repeats.append({"key": key, "sha1": sha1, "first": first[sha1]})
            first.setdefault(sha1, key)
    return repeats


def finalize(out: Path, settings: dict, shard_paths: list[Path]) -> dict | None:
    """Write manifest.jsonl, report.json and dropped.jsonl when every shard has its record; None otherwise."""
    records = []
    for path in shard_paths:
        try:
            records.append(json.loads(record_path(path).read_bytes()))
        except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
            return None
        except OSError as err:
            raise ShowoError(f"cannot read {record_path(path)}: {err.strerror or err}") from None
    manifest_keys = ("tokenizer", "transform", "resolution", "grid", "captioner")
    lines, dropped = [], []
    reasons: Counter[str] = Counter()
    tasks: Counter[str] = Counter()
    for record in records:
        entry = {
            "shard": record["shard"],
            "samples": record["samples"],
            "sha256": record["sha256"],
            "bytes": record["bytes"],
            **{k: settings[k] for k in manifest_keys},
            "source": record["source"],
            "inputs": record["inputs"],
            "tasks": record["tasks"],
        }
        lines.append(dumps_json(entry))
        for item in record["dropped"]:
            dropped.append(dumps_json({"shard": record["shard"], **item}))
            if item["reason"] != "duplicate":
                reasons[item["reason"]] += 1
        tasks.update(record["tasks"])
    inputs = sum(r["inputs"] for r in records)
    written = sum(r["samples"] for r in records)
    duplicates = sum(1 for r in records for item in r["dropped"] if item["reason"] == "duplicate")
    repeats = _repeats(records)
    images = sum(r["images"] for r in records)
    busy = _busy_seconds(records)
    report = {
        "source": settings["source"],
        "inputs": inputs,
        "written": written,
        "rejected": sum(reasons.values()),
        "rejected_by_reason": dict(sorted(reasons.items())),
        "duplicates": duplicates,
        "duplicates_across_shards": len(repeats),
        "dedup": settings["dedup"],
        "shards": len(records),
        "tasks": dict(sorted(tasks.items())),
        "images": images,
        "images_per_s": round(images / busy, 3) if busy > 0 else None,
        "bytes": sum(r["bytes"] for r in records),
    }
    atomic_write(out / MANIFEST_FILE, b"".join(line + b"\n" for line in lines))
    atomic_write(out / DROPPED_FILE, b"".join(line + b"\n" for line in dropped))
    atomic_write(out / REPEATS_FILE, b"".join(dumps_json(line) + b"\n" for line in repeats))
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
        entries = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except OSError as err:
        raise ShowoError(f"cannot read {path}: {err.strerror or err}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ShowoError(f"{path} is not valid JSON lines: {err}") from None
    if not entries:
        raise ShowoError(f"{path} lists no shards")
    return root, entries
