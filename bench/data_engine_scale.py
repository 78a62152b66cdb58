"""Data-engine scaling: does anything grow with the corpus? (issue 19)

Per build size N (`--sizes`, embedded shapes at 64 px, the tiny random tokenizer, 1000-image shards, the
CLI with its default workers and threads): images/s (busy, from report.json, and wall), the peak memory
of the whole process tree (the CLI and its DataLoader workers: the sum of their RSS, sampled every
0.2 s; shared pages count once per process, so this over-states), finalize time and additional memory
(run again on the finished build in a process of its own), resume time of the finished build (in
process, and the CLI's wall time including Python and torch start-up) and bytes per image. Then
`finalize` over synthetic records of 1M and 4M samples, the jsonl line index at 1M and 4M lines, and the
listing of a `pairs:` folder of 25,000 and 100,000 images with captions (first listing and reuse by the next
rank or resume), and a `llava:` JSON list of 100,000 and 400,000 conversations indexed (against `json.loads`
of the whole file, what the source did before), each with its time and additional memory. CPU milliseconds
per image (the build's process tree, start-up included) do not depend on what else the machine runs, unlike
images/s on a shared machine. One JSON line.
Run: `.venv/bin/python -m bench.data_engine_scale [--sizes 2000,8000,32000]`.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent


def sizes(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def measured(argv: list[str]) -> dict:
    """Run `argv`; wall seconds, CPU seconds of the process and all its descendants (they are waited for,
    so RUSAGE_CHILDREN holds them), peak RSS summed over the process tree, stdout."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    with tempfile.TemporaryFile() as out:
        proc = psutil.Popen(argv, cwd=ROOT, stdout=out, stderr=subprocess.DEVNULL)
        peak = 0
        while proc.poll() is None:
            total = 0
            try:
                family = [proc, *proc.children(recursive=True)]
            except psutil.NoSuchProcess:
                family = []
            for member in family:
                try:
                    total += member.memory_info().rss
                except psutil.NoSuchProcess:
                    pass
            peak = max(peak, total)
            time.sleep(0.2)
        wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = after.ru_utime + after.ru_stime - usage.ru_utime - usage.ru_stime
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(argv[:6])} ... failed with exit {proc.returncode}")
        out.seek(0)
        text = out.read().decode()
    return {"wall_s": round(wall, 2), "cpu_s": cpu, "peak_tree_mb": round(peak / 2**20, 1), "stdout": text}


def probe(*args: str) -> dict:
    """This script's `--probe` in a fresh process (its memory is its own), parsed."""
    result = measured([sys.executable, "-m", "bench.data_engine_scale", "--probe", *args])
    return json.loads(result["stdout"].strip().splitlines()[-1])


def build_command(out: Path, tokenizer: Path, count: int) -> list[str]:
    return [
        sys.executable, "-m", "data_engine.cli", "build", "--source", "embedded:shapes",
        "--limit", str(count), "--out", str(out), "--image-tokenizer", str(tokenizer), "--resolution", "64",
        "--shard-size", "1000", "--batch-size", "64", "--no-progress",
    ]  # fmt: skip


def one_size(work: Path, tokenizer: Path, count: int) -> dict:
    out = work / f"build-{count}"
    run = measured(build_command(out, tokenizer, count))
    report = json.loads((out / "report.json").read_text())
    resume_cli = measured(build_command(out, tokenizer, count))
    resume = probe("resume", str(out), str(tokenizer), str(count))
    final = probe("finalize", str(out))
    return {
        "images": report["images"],
        "images_per_s_busy": report["images_per_s"],
        "images_per_s_wall": round(report["images"] / run["wall_s"], 1),
        "cpu_ms_per_image": round(1000 * run["cpu_s"] / report["images"], 2),
        "peak_tree_mb": run["peak_tree_mb"],
        "resources": report.get("resources"),
        "finalize_s": final["seconds"],
        "finalize_additional_mb": final["additional_mb"],
        "resume_in_process_s": resume["seconds"],
        "resume_cli_wall_s": resume_cli["wall_s"],
        "bytes_per_image": round(report["bytes"] / report["images"], 1),
    }


SETTINGS = {
    "source": "synthetic",
    "dedup": "sha1",
    "tokenizer": {"path": "/t", "identity": "0" * 16, "codebook_size": 8192},
    "transform": {"name": "showo_transform"},
    "resolution": 64,
    "grid": [16, 16],
    "captioner": {"id": "keep"},
}


def synthetic_records(out: Path, samples: int, per_shard: int = 1000) -> None:
    """Records shaped like a real build's (1000 samples per shard, 1% repeats of an earlier shard's
    sha1, a few drops per shard); only finalize reads them."""
    from data_engine.writer import dumps_json

    (out / "records").mkdir(parents=True)
    (out / "build.json").write_bytes(dumps_json(SETTINGS))
    earlier: list[str] = []
    for unit in range(-(-samples // per_shard)):
        shard = f"syn-{unit:06d}"
        count = min(per_shard, samples - unit * per_shard)
        sha1 = {}
        for pos in range(count):
            repeat = earlier and pos % 100 == 0
            sha1[f"{shard}-{pos:06d}"] = earlier[pos % len(earlier)] if repeat else os.urandom(20).hex()
        earlier = list(sha1.values())[:50]
        record = {
            "unit": unit, "source": {"spec": "synthetic", "unit": unit}, "inputs": count + 3,
            "tasks": {"image_text": count}, "images": count, "sha1": sha1,
            "dropped": [{"position": count + i, "source": f"x{i}.jpg", "reason": "too_small", "detail": ""}
                        for i in range(3)],
            "started": float(unit), "finished": unit + 0.9, "shard": f"{shard}.tar", "samples": count,
            "bytes": 1000 * count, "sha256": "0" * 64,
        }  # fmt: skip
        (out / "records" / f"{shard}.json").write_bytes(dumps_json(record))


def write_jsonl(path: Path, lines: int) -> None:
    with path.open("w") as handle:
        for i in range(lines):
            handle.write(f'{{"image": "images/{i:08d}.jpg", "caption": "a picture, number {i}"}}\n')


def write_pairs(root: Path, images: int, per_folder: int = 2000) -> None:
    """Tiny stand-in files (the listing reads names and sizes, not pixels): an image and its caption each."""
    for i in range(images):
        folder = root / f"d{i // per_folder:04d}"
        if i % per_folder == 0:
            folder.mkdir(parents=True)
        (folder / f"{i:08d}.jpg").write_bytes(b"x" * 16)
        (folder / f"{i:08d}.txt").write_text("c")


def write_llava(path: Path, items: int) -> None:
    """A LLaVA-style JSON list written item by item (about 450 bytes each, like llava_v1_5_mix665k)."""
    answer = "A group of people stand near a red bus on a city street while it rains lightly. " * 3
    with path.open("w") as handle:
        handle.write("[")
        for i in range(items):
            item = {
                "id": f"{i:09d}",
                "image": f"coco/{i:012d}.jpg",
                "conversations": [
                    {"from": "human", "value": "<image>\nWhat is happening in this picture?"},
                    {"from": "gpt", "value": answer},
                ],
            }
            handle.write(("," if i else "") + json.dumps(item))
        handle.write("]")


def peak_rss() -> int:
    """This process's peak RSS in bytes. Linux's VmHWM belongs to the process image; ru_maxrss also keeps the
    RSS the forked child inherited from this bench's parent before exec (hundreds of MB of torch)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def additional_mb(before_rss: int) -> float:
    return round((peak_rss() - before_rss) / 2**20, 1)


def run_probe(args: list[str]) -> None:
    """`--probe finalize DIR` | `resume DIR TOKENIZER N` | `jsonl FILE` | `pairs DIR OUT` | `llava FILE ROOT` |
    `llava-whole FILE`: seconds and the additional peak memory of that step alone (the peak RSS after it,
    less the RSS before it)."""
    kind = args[0]
    if kind == "finalize":
        from data_engine.manifest import finalize

        out = Path(args[1])
        settings = json.loads((out / "build.json").read_text())
        paths = [out / f"{p.stem}.tar" for p in sorted((out / "records").glob("*.json"))]
        before = psutil.Process().memory_info().rss
        started = time.perf_counter()
        report = finalize(out, settings, paths)
        result = {"seconds": round(time.perf_counter() - started, 2), "samples": report["written"]}
        result["repeats"] = report["duplicates_across_shards"]
    elif kind == "resume":
        from data_engine.build import BuildOptions, build

        out, tokenizer, count = args[1], args[2], int(args[3])
        options = BuildOptions(
            source="embedded:shapes", out=out, tokenizer=tokenizer, resolution=64, limit=count,
            shard_size=1000, batch_size=64, progress=False,
        )  # fmt: skip
        before = psutil.Process().memory_info().rss
        started = time.perf_counter()
        build(options)
        result = {"seconds": round(time.perf_counter() - started, 2)}
    elif kind == "pairs":
        from data_engine.sources import open_source

        out = Path(args[2])
        out.mkdir()
        before = psutil.Process().memory_info().rss
        started = time.perf_counter()
        source = open_source(f"pairs:{args[1]}")
        source.attach(out)
        result = {"seconds": round(time.perf_counter() - started, 2), "entries": len(source)}
        started = time.perf_counter()
        open_source(f"pairs:{args[1]}").attach(out)
        result["reuse_s"] = round(time.perf_counter() - started, 4)
    elif kind in ("llava", "llava-whole"):
        from data_engine.sources import open_source

        before = psutil.Process().memory_info().rss
        started = time.perf_counter()
        if kind == "llava-whole":  # what the source did before: the whole list in memory
            entries = len(json.loads(Path(args[1]).read_bytes()))
        else:
            source = open_source(f"llava:{args[1]}", image_root=args[2])
            entries = len(source)
        result = {"seconds": round(time.perf_counter() - started, 2), "entries": entries}
        if kind == "llava":
            last = source.units(1000)[-1]
            started = time.perf_counter()
            read = sum(1 for _ in source.samples(last, 64))
            result["last_unit_read_s"] = round(time.perf_counter() - started, 4)
            assert read == last.stop - last.start
    else:
        from data_engine.sources import open_source

        before = psutil.Process().memory_info().rss
        started = time.perf_counter()
        source = open_source(f"jsonl:{args[1]}")
        seconds = time.perf_counter() - started
        last = source.units(1000)[-1]
        started = time.perf_counter()
        read = sum(1 for _ in source._records(last))
        result = {"seconds": round(seconds, 2), "lines": len(source), "last_unit_read_s": 0.0}
        result["last_unit_read_s"] = round(time.perf_counter() - started, 4)
        assert read == last.stop - last.start
    result["additional_mb"] = additional_mb(before)
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=sizes, default=sizes("2000,8000,32000"), help="images per build")
    parser.add_argument("--synthetic", type=sizes, default=sizes("1000000,4000000"), help="finalize samples")
    parser.add_argument("--jsonl-lines", type=sizes, default=sizes("1000000,4000000"), help="jsonl lines")
    parser.add_argument("--pairs-images", type=sizes, default=sizes("25000,100000"), help="pairs: listing")
    parser.add_argument("--llava-items", type=sizes, default=sizes("100000,400000"), help="llava: index")
    parser.add_argument("--probe", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.probe:
        run_probe(args.probe)
        return
    from bench.data_engine import tiny_tokenizer

    result: dict = {"bench": "data_engine_scale", "cores": len(os.sched_getaffinity(0))}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        tokenizer = tiny_tokenizer(work / "tokenizer")
        result["builds"] = {str(n): one_size(work, tokenizer, n) for n in args.sizes}
        result["synthetic_finalize"] = {}
        for n in args.synthetic:
            synthetic_records(work / f"syn-{n}", n)
            result["synthetic_finalize"][str(n)] = probe("finalize", str(work / f"syn-{n}"))
        result["jsonl_index"] = {}
        for n in args.jsonl_lines:
            write_jsonl(work / f"lines-{n}.jsonl", n)
            result["jsonl_index"][str(n)] = probe("jsonl", str(work / f"lines-{n}.jsonl"))
        result["pairs_listing"] = {}
        for n in args.pairs_images:
            write_pairs(work / f"pairs-{n}", n)
            result["pairs_listing"][str(n)] = probe("pairs", str(work / f"pairs-{n}"), str(work / f"out-{n}"))
        result["llava_index"] = {}
        for n in args.llava_items:
            write_llava(work / f"llava-{n}.json", n)
            result["llava_index"][str(n)] = {
                "indexed": probe("llava", str(work / f"llava-{n}.json"), str(work)),
                "whole_json": probe("llava-whole", str(work / f"llava-{n}.json")),
                "file_mb": round((work / f"llava-{n}.json").stat().st_size / 2**20, 1),
            }
    builds = list(result["builds"].values())
    if len(builds) > 1:
        small, large = builds[0], builds[-1]
        result["peak_memory_growth"] = round(large["peak_tree_mb"] / small["peak_tree_mb"] - 1, 3)
        result["images_per_s_ratio"] = round(large["images_per_s_busy"] / small["images_per_s_busy"], 3)
        result["cpu_per_image_ratio"] = round(large["cpu_ms_per_image"] / small["cpu_ms_per_image"], 3)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
