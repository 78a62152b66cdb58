"""Looking at finished shards: `inspect` decodes codes back to pixels with the tokenizer the manifest
names; `stats` summarises tasks, sizes, captions and code usage. Both read through `showo.data.reader`, the
reader training uses: shards are data only, and every sample's codes are checked against the codebook and
grid its manifest line records before they reach a tokenizer or a histogram. `stats --verify` also checks
every shard's sha256, that each sample's own `json` grid is the manifest's and that each shard holds the
number of samples its manifest line says."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from data_engine.manifest import MANIFEST_FILE, REPORT_FILE, read_manifest
from data_engine.writer import sha256_file
from showo.data.reader import CodeSpec, read_shards
from showo.errors import ShowoError
from showo.tasks import SAMPLE_KINDS


@dataclass(frozen=True)
class ManifestShard:
    """One manifest line: the shard file (inside the directory), its grid and the codes it may hold."""

    entry: dict
    path: Path
    grid: tuple[int, int]
    spec: CodeSpec


MAX_CODEBOOK = 1 << 16
"""Codes are stored as uint16 (the shard contract), so no codebook is larger."""


def _count(value: object, low: int, high: int | None = None) -> bool:
    return (
        isinstance(value, int)
        and not isinstance(value, bool)
        and value >= low
        and (high is None or value <= high)
    )


def _check_entry(entry: object, where: str, root: Path) -> tuple[str, list[int], int]:
    """The shard name, grid and codebook size of one manifest line, or a one-line error naming the line."""
    if not isinstance(entry, dict):
        raise ShowoError(f"{where}: not a JSON object")
    name = entry.get("shard")
    if not isinstance(name, str) or name in ("", ".", "..") or Path(name).name != name or "\\" in name:
        raise ShowoError(f"{where}: shard {name!r} is not a plain file name in {root}")
    tokenizer = entry.get("tokenizer")
    if not isinstance(tokenizer, dict) or not all(
        isinstance(tokenizer.get(k), str) for k in ("path", "identity")
    ):
        raise ShowoError(f"{where}: shard {name} needs a tokenizer with a path and an identity")
    grid, codebook = entry.get("grid"), tokenizer.get("codebook_size")
    if not (isinstance(grid, list) and len(grid) == 2 and all(_count(v, 1, MAX_CODEBOOK) for v in grid)):
        raise ShowoError(f"{where}: shard {name} has grid {grid!r}, not two positive integers")
    if not _count(codebook, 1, MAX_CODEBOOK):
        raise ShowoError(
            f"{where}: shard {name} has codebook_size {codebook!r}, not an integer in 1..{MAX_CODEBOOK}"
        )
    if not (_count(entry.get("samples"), 0) and _count(entry.get("bytes"), 0)):
        raise ShowoError(f"{where}: shard {name} needs non-negative integer samples and bytes")
    return name, grid, codebook


def manifest_shards(directory: str | Path) -> tuple[Path, list[ManifestShard]]:
    """The manifest's shards, with every line checked: a manifest comes with the shards, so a name that
    leaves the directory or a malformed grid is an error, never followed."""
    root, entries = read_manifest(directory)
    shards = []
    for number, entry in enumerate(entries, 1):
        name, grid, codebook = _check_entry(entry, f"{root / MANIFEST_FILE} line {number}", root)
        path = root / name
        if not path.is_file():
            raise ShowoError(f"shard listed in the manifest is missing: {path}")
        shards.append(ManifestShard(entry, path, (grid[0], grid[1]), CodeSpec(codebook, grid[0] * grid[1])))
    return root, shards


def _meta(shard: ManifestShard, sample: dict) -> dict:
    meta = sample.get("json")
    if meta is None or meta.get("task") not in SAMPLE_KINDS:
        raise ShowoError(
            f"shard {shard.path}: sample {sample['__key__']!r} needs a json task, one of {', '.join(SAMPLE_KINDS)}"
        )
    return meta


def iter_samples(directory: str | Path, verify: bool = False) -> Iterator[tuple[ManifestShard, dict]]:
    """Every sample of a shard directory in manifest order, decoded and checked by the shard reader.

    With `verify`, also each sample's own `json` grid against the manifest's and each shard's sample count."""
    _, shards = manifest_shards(directory)
    for shard in shards:
        count = 0
        for sample in read_shards([str(shard.path)], shard.spec):
            count += 1
            if verify and "codes.npy" in sample and _meta(shard, sample).get("grid") != list(shard.grid):
                raise ShowoError(
                    f"shard {shard.path}: sample {sample['__key__']!r} says grid {sample['json'].get('grid')!r},"
                    f" the manifest says {list(shard.grid)}"
                )
            yield shard, sample
        if verify and count != shard.entry["samples"]:
            raise ShowoError(
                f"shard {shard.path} holds {count} samples, the manifest says {shard.entry['samples']}"
            )


def inspect_shards(
    directory: str | Path, grid_path: str | Path, count: int = 16, tokenizer: str | None = None
) -> list[dict]:
    """Decode the first `count` image samples into one PNG grid; returns their keys and texts.

    The tokenizer is the one the manifest names (or `tokenizer`), and its identity must match the one
    that produced the codes: decoding with another tokenizer would show plausible-looking garbage.
    """
    from showo.sampling.images import make_grid, to_pil
    from showo.tokenizer import load_image_tokenizer

    _, shards = manifest_shards(directory)
    expected = shards[0].entry["tokenizer"]
    model = load_image_tokenizer(tokenizer or expected["path"])
    if model.identity() != expected["identity"]:
        raise ShowoError(
            f"tokenizer {tokenizer or expected['path']} is {model.identity()}, "
            f"but the shards were encoded with {expected['identity']}"
        )
    tiles, shown = [], []
    for shard, sample in iter_samples(directory):
        if "codes.npy" not in sample:
            continue
        codes = np.asarray(sample["codes.npy"]).astype(np.int64).reshape(-1, shard.spec.tokens)
        pixels = model.decode(torch.from_numpy(codes), grid=shard.grid)
        tiles.extend(to_pil(pixels))
        shown.append(
            {"key": sample["__key__"], "task": _meta(shard, sample)["task"], "txt": sample.get("txt")}
        )
        if len(shown) >= count:
            break
    if not tiles:
        raise ShowoError(f"{directory} holds no image samples to inspect")
    path = Path(grid_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    make_grid(tiles, ncol=min(8, len(tiles))).save(path, format="PNG")
    return shown


def shard_stats(directory: str | Path, verify: bool = False) -> dict:
    """Counts per task, bytes per sample, caption lengths and codebook usage over the whole directory;
    `verify` checks every sha256, every sample's grid and every shard's sample count against the manifest."""
    root, shards = manifest_shards(directory)
    entries = [s.entry for s in shards]
    if verify:
        for shard in shards:
            if sha256_file(shard.path) != shard.entry.get("sha256"):
                raise ShowoError(f"shard {shard.entry['shard']} does not match the sha256 in the manifest")
    codebook = max(s.spec.codebook_size for s in shards)
    usage = np.zeros(codebook, dtype=np.int64)
    tasks: Counter[str] = Counter()
    lengths = []
    samples = 0
    for shard, sample in iter_samples(directory, verify):
        samples += 1
        tasks[_meta(shard, sample)["task"]] += 1
        lengths.append(len(sample.get("txt", "")))
        if "codes.npy" in sample:
            usage += np.bincount(np.asarray(sample["codes.npy"], dtype=np.int64).ravel(), minlength=codebook)
    total_bytes = sum(e["bytes"] for e in entries)
    probs = usage[usage > 0] / max(usage.sum(), 1)
    captioner = entries[0].get("captioner")
    stats = {
        "directory": str(root),
        "shards": len(entries),
        "samples": samples,
        "tasks": dict(sorted(tasks.items())),
        "bytes": total_bytes,
        "bytes_per_sample": round(total_bytes / max(samples, 1), 1),
        "resolution": entries[0].get("resolution"),
        "grid": entries[0]["grid"],
        "tokenizer": entries[0]["tokenizer"]["identity"],
        "captioner": captioner.get("id") if isinstance(captioner, dict) else None,
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
        try:
            stats["report"] = json.loads(report.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ShowoError(f"{report} cannot be read as JSON: {err}") from None
    return stats
