"""Data-engine throughput and storage: `showo-data build` with 1 process against 2 partitions run side by
side (`--rank/--world-size`), on a pairs: directory of JPEGs cut from the embedded photos; and bytes per
shard sample against the source JPEG.

images/s is reported twice: `wall` from launching the processes to the last one exiting (includes Python
and torch start-up), `busy` from report.json (the union of the shards' encode intervals). Each process
gets `--threads` (default `cores / processes`) torch threads and one DataLoader worker. The tokenizer is `--tokenizer` or a
random one at the tiny test size (speed does not depend on the weights). One JSON line.
Run: `.venv/bin/python -m bench.data_engine [--images 192 --resolution 64 --tokenizer DIR]`.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def make_corpus(directory: Path, count: int, seed: int = 0) -> list[int]:
    """`count` JPEGs (q90, 320x240 or 240x320 crops of the embedded photos) with one-line captions."""
    from showo.embedded import photos

    directory.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    pictures = [photos.load(name) for name in photos.names("train")]
    sizes = []
    for i in range(count):
        picture = pictures[i % len(pictures)]
        w, h = (320, 240) if i % 3 else (240, 320)
        scale = max(w / picture.width, h / picture.height) * rng.uniform(1.0, 1.6)
        resized = picture.resize(
            (max(w, round(picture.width * scale)), max(h, round(picture.height * scale)))
        )
        left = int(rng.integers(0, resized.width - w + 1))
        top = int(rng.integers(0, resized.height - h + 1))
        data = io.BytesIO()
        resized.crop((left, top, left + w, top + h)).save(data, format="JPEG", quality=90)
        (directory / f"{i:05d}.jpg").write_bytes(data.getvalue())
        (directory / f"{i:05d}.txt").write_text(f"photo crop number {i}")
        sizes.append(len(data.getvalue()))
    return sizes


def tiny_tokenizer(directory: Path) -> Path:
    """A random tokenizer at the tests' tiny size (64 px -> 16x16 codes, 13 bits)."""
    import torch

    from showo.tokenizer import ImageTokenizer, TokenizerConfig

    torch.manual_seed(0)
    config = TokenizerConfig(
        ch=8, ch_mult=[1, 1, 2], num_res_blocks=[1, 1, 1], decoder_ch_mult=[1, 1, 2],
        decoder_num_res_blocks=[1, 1, 1], z_channels=13, resolution=64, norm_groups=4,
    )  # fmt: skip
    return ImageTokenizer(config).save_pretrained(directory)


def run_build(source: Path, out: Path, tokenizer: Path, args, world: int) -> dict:
    """Launch `world` partitions at once; returns wall time and the finished report."""
    threads = args.threads or max(1, (os.cpu_count() or 1) // world)
    command = [
        sys.executable,
        "-m",
        "data_engine.cli",
        "build",
        "--source",
        f"pairs:{source}",
        "--out",
        str(out),
    ]
    command += [
        "--tokenizer",
        str(tokenizer),
        "--resolution",
        str(args.resolution),
        "--shard-size",
        str(args.shard_size),
    ]
    command += [
        "--batch-size",
        str(args.batch_size),
        "--workers",
        "1",
        "--threads",
        str(threads),
        "--no-progress",
    ]
    start = time.perf_counter()
    procs = [
        subprocess.Popen([*command, "--rank", str(r), "--world-size", str(world)], stdout=subprocess.DEVNULL)
        for r in range(world)
    ]
    if any(p.wait() != 0 for p in procs):
        raise SystemExit("build failed")
    wall = time.perf_counter() - start
    report = json.loads((out / "report.json").read_text())
    return {
        "wall_s": round(wall, 2),
        "images_per_s_wall": round(report["images"] / wall, 2),
        "images_per_s_busy": report["images_per_s"],
        "report": report,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=192)
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--shard-size", type=int, default=24)
    parser.add_argument("--batch-size", type=int, default=24)
    parser.add_argument("--tokenizer", help="tokenizer dir (default: a random tiny one)")
    parser.add_argument("--threads", type=int, help="torch threads per process (default: cores / processes)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        if args.tokenizer:
            tokenizer = Path(args.tokenizer)
        else:
            tokenizer = tiny_tokenizer(root / "tokenizer")
        sizes = make_corpus(root / "src", args.images)
        one = run_build(root / "src", root / "one", tokenizer, args, 1)
        two = run_build(root / "src", root / "two", tokenizer, args, 2)
        same = all(
            (root / "one" / p.name).read_bytes() == p.read_bytes()
            for p in sorted((root / "two").glob("*.tar"))
        )
        report = one.pop("report")
        two.pop("report")
        import torch

        per_sample = report["bytes"] / report["written"]
        print(
            json.dumps(
                {
                    "bench": "data_engine",
                    "device": "cuda" if torch.cuda.is_available() else "cpu",
                    "cpu_count": os.cpu_count(),
                    "tokenizer": str(args.tokenizer or "tiny-random"),
                    "resolution": args.resolution,
                    "threads_per_process": args.threads or "cores/processes",
                    "inputs": report["inputs"],
                    "one_process": one,
                    "two_processes": two,
                    "speedup_wall_2_vs_1": round(two["images_per_s_wall"] / one["images_per_s_wall"], 2),
                    "two_partitions_byte_identical": same,
                    "source_jpeg_bytes_per_sample": round(float(np.mean(sizes)), 1),
                    "shard_bytes_per_sample": round(per_sample, 1),
                    "shard_vs_jpeg_bytes": round(per_sample / float(np.mean(sizes)), 3),
                }
            )
        )


if __name__ == "__main__":
    main()
