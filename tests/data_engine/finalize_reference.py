"""The in-memory `finalize` as it was before it streamed its records (issue 19), kept verbatim as the
reference the streaming version must match byte for byte. Test-only: it holds every record at once."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from data_engine.writer import dumps_json, record_path


def _busy_seconds(records: list[dict]) -> float:
    spans = sorted((r["started"], r["finished"]) for r in records if "started" in r)
    total, end = 0.0, float("-inf")
    for start, stop in spans:
        if stop > end:
            total += stop - max(start, end)
            end = stop
    return total


def _repeats(records: list[dict]) -> list[dict]:
    first: dict[str, str] = {}
    repeats = []
    for record in records:
        for key, sha1 in record["sha1"].items():
            if sha1 in first and first[sha1].rsplit("-", 1)[0] != key.rsplit("-", 1)[0]:
                repeats.append({"key": key, "sha1": sha1, "first": first[sha1]})
            first.setdefault(sha1, key)
    return repeats


def reference_finalize(settings: dict, shard_paths: list[Path]) -> dict[str, bytes] | None:
    """The four files' bytes (manifest, dropped, repeats, report) as the old finalize wrote them."""
    records = []
    for path in shard_paths:
        try:
            records.append(json.loads(record_path(path).read_bytes()))
        except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
            return None
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
    return {
        "manifest.jsonl": b"".join(line + b"\n" for line in lines),
        "dropped.jsonl": b"".join(line + b"\n" for line in dropped),
        "duplicates_across_shards.jsonl": b"".join(dumps_json(line) + b"\n" for line in repeats),
        "report.json": json.dumps(report, indent=2).encode() + b"\n",
    }
