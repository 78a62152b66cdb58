"""Looking at finished shards: `inspect` decodes codes back to pixels with the tokenizer the manifest
names; `stats` summarises tasks, sizes, captions and code usage (optionally verifying every sha256)."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import numpy as np
import torch
import webdataset as wds

from data_engine.manifest import REPORT_FILE, read_manifest
from data_engine.writer import sha256_file
from showo.errors import ShowoError


def iter_samples(directory: str | Path):
    """Every sample of a shard directory in manifest order, decoded by webdataset (npy/json/txt)."""
    root, entries = read_manifest(directory)
    urls = [str(root / e["shard"]) for e in entries]
    missing = [u for u in urls if not Path(u).is_file()]
    if missing:
        raise ShowoError(f"shard listed in the manifest is missing: {missing[0]}")
    return wds.WebDataset(urls, shardshuffle=False, nodesplitter=None, empty_check=False).decode()


def inspect_shards(
    directory: str | Path, grid_path: str | Path, count: int = 16, tokenizer: str | None = None
) -> list[dict]:
    """Decode the first `count` image samples into one PNG grid; returns their keys and texts.

    The tokenizer is the one the manifest names (or `tokenizer`), and its identity must match the one
    that produced the codes: decoding with another tokenizer would show plausible-looking garbage.
    """
    from showo.sampling.images import make_grid, to_pil
    from showo.tokenizer import load_image_tokenizer

    _, entries = read_manifest(directory)
    expected = entries[0]["tokenizer"]
    model = load_image_tokenizer(tokenizer or expected["path"])
    if model.identity() != expected["identity"]:
        raise ShowoError(
            f"tokenizer {tokenizer or expected['path']} is {model.identity()}, "
            f"but the shards were encoded with {expected['identity']}"
        )
    tiles, shown = [], []
    for sample in iter_samples(directory):
        if "codes.npy" not in sample:
            continue
        codes = (
            np.asarray(sample["codes.npy"]).astype(np.int64).reshape(-1, math.prod(sample["json"]["grid"]))
        )
        pixels = model.decode(torch.from_numpy(codes), grid=tuple(sample["json"]["grid"]))
        tiles.extend(to_pil(pixels))
        shown.append({"key": sample["__key__"], "task": sample["json"]["task"], "txt": sample["txt"]})
        if len(shown) >= count:
            break
    if not tiles:
        raise ShowoError(f"{directory} holds no image samples to inspect")
    path = Path(grid_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    make_grid(tiles, ncol=min(8, len(tiles))).save(path, format="PNG")
    return shown


def shard_stats(directory: str | Path, verify: bool = False) -> dict:
    """Counts per task, bytes per sample, caption lengths and codebook usage over the whole directory."""
    root, entries = read_manifest(directory)
    if verify:
        for entry in entries:
            if sha256_file(root / entry["shard"]) != entry["sha256"]:
                raise ShowoError(f"shard {entry['shard']} does not match the sha256 in the manifest")
    codebook = entries[0]["tokenizer"]["codebook_size"]
    usage = np.zeros(codebook, dtype=np.int64)
    tasks: Counter[str] = Counter()
    lengths = []
    samples = 0
    for sample in iter_samples(directory):
        samples += 1
        tasks[sample["json"]["task"]] += 1
        lengths.append(len(sample["txt"]))
        if "codes.npy" in sample:
            usage += np.bincount(np.asarray(sample["codes.npy"], dtype=np.int64).ravel(), minlength=codebook)
    total_bytes = sum(e["bytes"] for e in entries)
    probs = usage[usage > 0] / max(usage.sum(), 1)
    stats = {
        "directory": str(root),
        "shards": len(entries),
        "samples": samples,
        "tasks": dict(sorted(tasks.items())),
        "bytes": total_bytes,
        "bytes_per_sample": round(total_bytes / max(samples, 1), 1),
        "resolution": entries[0]["resolution"],
        "grid": entries[0]["grid"],
        "tokenizer": entries[0]["tokenizer"]["identity"],
        "captioner": entries[0]["captioner"]["id"],
        "text_chars": {"mean": round(float(np.mean(lengths)), 1), "max": int(max(lengths))}
        if lengths
        else None,
        "codes": {
            "codebook_size": codebook,
            "used": int((usage > 0).sum()),
            "used_fraction": round(float((usage > 0).mean()), 4),
            "entropy_bits": round(float(-(probs * np.log2(probs)).sum()), 3),
        },
        "verified": verify,
    }
    report = root / REPORT_FILE
    if report.is_file():
        stats["report"] = json.loads(report.read_text())
    return stats
