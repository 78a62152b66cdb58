"""Looking at finished shards: `inspect` decodes codes (or VAE latents) back to pixels with the tokenizer
(or VAE) the manifest names; `stats` summarises tasks, sizes, captions and code usage (or latent value
statistics). Both read through `showo.data.reader`, the reader training uses: shards are data only, and
every sample's codes are checked against the codebook and grid its manifest line records (latents against
its channels and grid, and for finite values) before they reach a decoder or a histogram; a sample holding
the other image member than the manifest's `image_format` says is refused. `stats --verify` also checks
every shard's sha256, that each sample's own `json` grid is the manifest's and that each shard holds the
number of samples its manifest line says."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from data_engine.manifest import MANIFEST_FILE, REPORT_FILE, read_manifest
from data_engine.writer import sha256_file
from showo.data.reader import CodeSpec, read_shards
from showo.errors import ShowoError
from showo.safeio import loads_json
from showo.tasks import SAMPLE_KINDS

IMAGE_FORMATS = {"codes": ("tokenizer", "codes.npy"), "latents": ("vae", "latents.npy")}
"""image_format -> (the manifest key naming its encoder, the sample member holding the image)."""


@dataclass(frozen=True)
class ManifestShard:
    """One manifest line: the shard file (inside the directory), its grid, what its images are
    (`image_format`) and what they may look like (`spec` for codes, `channels` for latents)."""

    entry: dict
    path: Path
    grid: tuple[int, int]
    image_format: str
    spec: CodeSpec | None
    channels: int | None

    @property
    def encoder(self) -> dict:
        return self.entry[IMAGE_FORMATS[self.image_format][0]]

    @property
    def member(self) -> str:
        return IMAGE_FORMATS[self.image_format][1]


MAX_CODEBOOK = 1 << 16
"""Codes are stored as uint16 (the shard contract), so no codebook is larger."""
MAX_CHANNELS = 4096
"""Latent channels past this are a corrupt manifest, not a VAE."""


def _count(value: object, low: int, high: int | None = None) -> bool:
    return (
        isinstance(value, int)
        and not isinstance(value, bool)
        and value >= low
        and (high is None or value <= high)
    )


def _check_entry(entry: object, where: str, root: Path) -> ManifestShard:
    """One manifest line checked, or a one-line error naming the line. A line without `image_format` was
    written before builds could store latents: it holds codes."""
    if not isinstance(entry, dict):
        raise ShowoError(f"{where}: not a JSON object")
    name = entry.get("shard")
    if not isinstance(name, str) or name in ("", ".", "..") or Path(name).name != name or "\\" in name:
        raise ShowoError(f"{where}: shard {name!r} is not a plain file name in {root}")
    image_format = entry.get("image_format", "codes")
    if image_format not in IMAGE_FORMATS:
        raise ShowoError(
            f"{where}: shard {name} has image_format {image_format!r}, not one of {', '.join(IMAGE_FORMATS)}"
        )
    key = IMAGE_FORMATS[image_format][0]
    encoder = entry.get(key)
    if not isinstance(encoder, dict) or not all(
        isinstance(encoder.get(k), str) for k in ("path", "identity")
    ):
        raise ShowoError(f"{where}: shard {name} needs a {key} with a path and an identity")
    grid = entry.get("grid")
    if not (isinstance(grid, list) and len(grid) == 2 and all(_count(v, 1, MAX_CODEBOOK) for v in grid)):
        raise ShowoError(f"{where}: shard {name} has grid {grid!r}, not two positive integers")
    spec, channels = None, None
    if image_format == "codes":
        codebook = encoder.get("codebook_size")
        if not _count(codebook, 1, MAX_CODEBOOK):
            raise ShowoError(
                f"{where}: shard {name} has codebook_size {codebook!r}, not an integer in 1..{MAX_CODEBOOK}"
            )
        spec = CodeSpec(codebook, grid[0] * grid[1])
    else:
        channels = encoder.get("latent_channels")
        if not _count(channels, 1, MAX_CHANNELS):
            raise ShowoError(
                f"{where}: shard {name} has latent_channels {channels!r}, not an integer in 1..{MAX_CHANNELS}"
            )
    if not (_count(entry.get("samples"), 0) and _count(entry.get("bytes"), 0)):
        raise ShowoError(f"{where}: shard {name} needs non-negative integer samples and bytes")
    return ManifestShard(entry, root / name, (grid[0], grid[1]), image_format, spec, channels)


def manifest_shards(directory: str | Path) -> tuple[Path, list[ManifestShard]]:
    """The manifest's shards, with every line checked: a manifest comes with the shards, so a name that
    leaves the directory or a malformed grid is an error, never followed. One directory is one build, so
    every line must hold the same image format."""
    root, entries = read_manifest(directory)
    shards = []
    for number, entry in enumerate(entries, 1):
        shard = _check_entry(entry, f"{root / MANIFEST_FILE} line {number}", root)
        if not shard.path.is_file():
            raise ShowoError(f"shard listed in the manifest is missing: {shard.path}")
        if shards and shard.image_format != shards[0].image_format:
            raise ShowoError(
                f"{root / MANIFEST_FILE} line {number}: shard {shard.path.name} holds {shard.image_format}, "
                f"line 1 {shards[0].image_format}"
            )
        shards.append(shard)
    return root, shards


def latents_problem(latents: np.ndarray, channels: int, grid: tuple[int, int]) -> str | None:
    """Why `latents` do not fit the manifest ([C, h, w], or [F, C, h, w] for keyframes), or None.
    The reader already refused any dtype but float16."""
    expected = (channels, *grid)
    if latents.ndim not in (3, 4) or latents.shape[-3:] != expected:
        shape = list(expected)
        return f"latents have shape {list(latents.shape)}, the manifest needs {shape} or [F, {str(shape)[1:]}"
    if latents.size == 0:
        return "latents hold no frames"
    if not np.isfinite(latents).all():
        return "latents hold values that are not finite"
    return None


def _check_image(shard: ManifestShard, sample: dict) -> None:
    """The sample's image member is the one its manifest line's format names, and latents fit the grid
    (codes were checked by the reader)."""
    other = next(m for f, (_, m) in IMAGE_FORMATS.items() if f != shard.image_format)
    if other in sample:
        raise ShowoError(
            f"shard {shard.path}: sample {sample['__key__']!r} holds {other}, "
            f"but the manifest says the shards hold {shard.image_format}"
        )
    if shard.channels is not None and "latents.npy" in sample:
        problem = latents_problem(sample["latents.npy"], shard.channels, shard.grid)
        if problem is not None:
            raise ShowoError(f"shard {shard.path}: sample {sample['__key__']!r}: {problem}")


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
            _check_image(shard, sample)
            if verify and shard.member in sample and _meta(shard, sample).get("grid") != list(shard.grid):
                raise ShowoError(
                    f"shard {shard.path}: sample {sample['__key__']!r} says grid {sample['json'].get('grid')!r},"
                    f" the manifest says {list(shard.grid)}"
                )
            yield shard, sample
        if verify and count != shard.entry["samples"]:
            raise ShowoError(
                f"shard {shard.path} holds {count} samples, the manifest says {shard.entry['samples']}"
            )


def _decoder(first: ManifestShard, tokenizer: str | None, vae: str | None) -> Callable[..., torch.Tensor]:
    """(shard, stored image) -> pixels [N,3,H,W], by the tokenizer or VAE the manifest names (or the
    override), whose identity must be the one that encoded the shards: decoding with another model would
    show plausible-looking garbage."""
    expected = first.encoder
    wrong, right = (
        ("--vae", "--image-tokenizer") if first.image_format == "codes" else ("--image-tokenizer", "--vae")
    )
    if (vae if first.image_format == "codes" else tokenizer) is not None:
        raise ShowoError(f"the shards hold {first.image_format}: {wrong} does not apply (use {right})")
    if first.image_format == "codes":
        from showo.tokenizer import load_image_tokenizer

        path, what = tokenizer or expected["path"], "tokenizer"
        model = load_image_tokenizer(path)

        def decode(shard: ManifestShard, image: np.ndarray) -> torch.Tensor:
            codes = image.astype(np.int64).reshape(-1, shard.spec.tokens)
            return model.decode(torch.from_numpy(codes), grid=shard.grid)

    else:
        from showo.vae import load_vae

        path, what = vae or expected["path"], "VAE"
        model = load_vae(path)

        def decode(shard: ManifestShard, image: np.ndarray) -> torch.Tensor:
            latents = image.astype(np.float32).reshape(-1, shard.channels, *shard.grid)
            return model.decode(torch.from_numpy(latents))

    if model.identity() != expected["identity"]:
        raise ShowoError(
            f"{what} {path} is {model.identity()}, but the shards were encoded with {expected['identity']}"
        )
    return decode


def inspect_shards(
    directory: str | Path,
    grid_path: str | Path,
    count: int = 16,
    tokenizer: str | None = None,
    vae: str | None = None,
) -> list[dict]:
    """Decode the first `count` image samples (codes or latents) into one PNG grid; returns their keys and
    texts. The decoder is the one the manifest names, or `tokenizer` / `vae` with the same identity."""
    from showo.sampling.images import make_grid, to_pil

    _, shards = manifest_shards(directory)
    decode = _decoder(shards[0], tokenizer, vae)
    tiles, shown = [], []
    with torch.inference_mode():
        for shard, sample in iter_samples(directory):
            if shard.member not in sample:
                continue
            tiles.extend(to_pil(decode(shard, np.asarray(sample[shard.member]))))
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


class _CodeUsage:
    """How often each code occurs, summed over every image."""

    def __init__(self, shards: list[ManifestShard]):
        self.codebook = max(s.spec.codebook_size for s in shards)
        self.usage = np.zeros(self.codebook, dtype=np.int64)

    def add(self, codes: np.ndarray) -> None:
        self.usage += np.bincount(np.asarray(codes, dtype=np.int64).ravel(), minlength=self.codebook)

    def summary(self) -> dict:
        usage = self.usage
        probs = usage[usage > 0] / max(usage.sum(), 1)
        return {
            "codebook_size": self.codebook,
            "used": int((usage > 0).sum()),
            "used_fraction": round(float((usage > 0).mean()), 4),
            "entropy_bits": round(float(-(probs * np.log2(probs)).sum()), 3),
        }


class _LatentMoments:
    """Per-channel mean and standard deviation of the raw latents (in float64), and their range: what a
    recipe compares with the VAE's scaling factor."""

    def __init__(self, shards: list[ManifestShard]):
        self.channels = shards[0].channels
        self.total = np.zeros(self.channels)
        self.squares = np.zeros(self.channels)
        self.count = 0
        self.low, self.high = np.inf, -np.inf

    def add(self, latents: np.ndarray) -> None:
        values = np.asarray(latents, dtype=np.float64).reshape(
            -1, self.channels, latents.shape[-2] * latents.shape[-1]
        )
        self.total += values.sum(axis=(0, 2))
        self.squares += (values**2).sum(axis=(0, 2))
        self.count += values.shape[0] * values.shape[2]
        self.low, self.high = min(self.low, float(values.min())), max(self.high, float(values.max()))

    def summary(self) -> dict:
        n = max(self.count, 1)
        mean = self.total / n
        std = np.sqrt(np.maximum(self.squares / n - mean**2, 0.0))
        return {
            "channels": self.channels,
            "mean": [round(float(v), 4) for v in mean],
            "std": [round(float(v), 4) for v in std],
            "min": round(self.low, 4) if self.count else None,
            "max": round(self.high, 4) if self.count else None,
        }


def shard_stats(directory: str | Path, verify: bool = False) -> dict:
    """Counts per task, bytes per sample, caption lengths and codebook usage (latents: per-channel moments)
    over the whole directory; `verify` checks every sha256, every sample's grid and every shard's sample
    count against the manifest."""
    root, shards = manifest_shards(directory)
    entries = [s.entry for s in shards]
    if verify:
        for shard in shards:
            if sha256_file(shard.path) != shard.entry.get("sha256"):
                raise ShowoError(f"shard {shard.entry['shard']} does not match the sha256 in the manifest")
    first = shards[0]
    images = _CodeUsage(shards) if first.image_format == "codes" else _LatentMoments(shards)
    tasks: Counter[str] = Counter()
    lengths = []
    samples = 0
    for shard, sample in iter_samples(directory, verify):
        samples += 1
        tasks[_meta(shard, sample)["task"]] += 1
        lengths.append(len(sample.get("txt", "")))
        if shard.member in sample:
            images.add(sample[shard.member])
    total_bytes = sum(e["bytes"] for e in entries)
    captioner = entries[0].get("captioner")
    encoder_key = IMAGE_FORMATS[first.image_format][0]
    stats = {
        "directory": str(root),
        "shards": len(entries),
        "samples": samples,
        "tasks": dict(sorted(tasks.items())),
        "bytes": total_bytes,
        "bytes_per_sample": round(total_bytes / max(samples, 1), 1),
        "resolution": entries[0].get("resolution"),
        "grid": entries[0]["grid"],
        "image_format": first.image_format,
        encoder_key: first.encoder["identity"],
        "captioner": captioner.get("id") if isinstance(captioner, dict) else None,
        "text_chars": {"mean": round(float(np.mean(lengths)), 1), "max": int(max(lengths))}
        if lengths
        else None,
        first.image_format: images.summary(),
        "verified": verify,
    }
    report = root / REPORT_FILE
    if report.is_file():
        try:
            stats["report"] = loads_json(report.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ShowoError(f"{report} cannot be read as JSON: {err}") from None
    return stats
