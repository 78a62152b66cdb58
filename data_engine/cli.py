"""`showo-data build | inspect | stats`: the offline data engine's command line.

A `ShowoError` (bad source, missing tokenizer or VAE, unknown kind, ...) prints one line
`showo-data: error: <message>` and exits 2, like argparse usage errors.
"""

from __future__ import annotations

import argparse
import json
import sys

from showo.cli import Parser, run_parser
from showo.commands import checks

MAX_INSPECT = 4096
"""Samples one inspect grid may show (each is decoded to pixels)."""


def _add_build(subparsers) -> None:
    p = subparsers.add_parser(
        "build",
        help="encode a source into WebDataset shards",
        description="Decode, transform, recaption and encode a source into shards + manifest.jsonl + report.json"
        " (image codes with --image-tokenizer, continuous VAE latents with --vae).",
    )
    p.add_argument(
        "--source",
        required=True,
        help="KIND:PATH with KIND in pairs|jsonl|wds|imagefolder|text|llava|embedded",
    )
    p.add_argument("--out", required=True, help="output directory (created; a rerun resumes it)")
    p.add_argument(
        "--image-tokenizer",
        "--tokenizer",  # the earlier name, kept as an alias
        dest="image_tokenizer",
        help="image tokenizer directory or official checkpoint (shards hold codes.npy)",
    )
    p.add_argument(
        "--vae",
        help="diffusers AutoencoderKL directory: shards hold its raw latents (latents.npy, float16) instead",
    )
    p.add_argument(
        "--resolution", type=int, default=256, help="square side in pixels (256 -> 16x16 codes at f=16)"
    )
    p.add_argument(
        "--recaptioner", default="keep", help="keep | template | hf:PATH | showo:PATH (default: keep)"
    )
    p.add_argument(
        "--caption-prompt",
        help="prompt: the question for showo: (default 'Describe the image.'), text for hf: models that take one",
    )
    p.add_argument("--caption-max-tokens", type=int, default=48)
    p.add_argument(
        "--shard-size", type=int, default=1000, help="inputs per shard (wds: one shard per input tar)"
    )
    p.add_argument("--name", help="shard name prefix (default: from the source)")
    p.add_argument("--rank", type=int, help="this partition (default: $RANK from torchrun, else 0)")
    p.add_argument("--world-size", type=int, help="number of partitions (default: $WORLD_SIZE, else 1)")
    p.add_argument("--batch-size", type=int, default=32, help="images per encoder call")
    p.add_argument(
        "--workers",
        type=int,
        help="DataLoader workers decoding and resizing (default: fit the cores; workers x threads <= cores)",
    )
    p.add_argument(
        "--dedup", default="sha1", choices=("none", "sha1", "codes"), help="drop exact duplicates per shard"
    )
    p.add_argument("--min-size", type=int, default=32, help="reject images whose short side is smaller")
    p.add_argument(
        "--max-pixels",
        type=int,
        help="reject images declaring more pixels (default and maximum: Pillow's bomb limit)",
    )
    p.add_argument("--max-caption-chars", type=int, default=8192, help="reject longer source captions")
    p.add_argument("--image-root", help="image directory for jsonl:/llava: sources")
    p.add_argument("--split", default="train", help="embedded: split (train | heldout)")
    p.add_argument("--limit", type=int, help="use only the first N inputs (embedded: how many to generate)")
    p.add_argument(
        "--device", default="auto", help="encoder device: auto (GPU when present) | cpu | cuda[:N]"
    )
    p.add_argument(
        "--threads",
        type=int,
        help="torch CPU threads for the encoder (default: fit the cores, see --workers)",
    )
    p.add_argument(
        "--verify",
        action="store_true",
        help="on resume, re-hash finished shards against their recorded sha256 (default: size and record)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_run_build)


def _run_build(args: argparse.Namespace) -> int:
    from data_engine.finished import finished_report
    from data_engine.options import BuildOptions

    options = BuildOptions(
        source=args.source,
        out=args.out,
        tokenizer=args.image_tokenizer,
        vae=args.vae,
        resolution=args.resolution,
        recaptioner=args.recaptioner,
        caption_prompt=args.caption_prompt,
        caption_max_tokens=args.caption_max_tokens,
        shard_size=args.shard_size,
        name=args.name,
        rank=args.rank,
        world_size=args.world_size,
        batch_size=args.batch_size,
        workers=args.workers,
        dedup=args.dedup,
        min_size=args.min_size,
        max_pixels=args.max_pixels,
        max_caption_chars=args.max_caption_chars,
        image_root=args.image_root,
        split=args.split,
        limit=args.limit,
        progress=not args.no_progress,
        device=args.device,
        threads=args.threads,
        verify=args.verify,
    )
    report = finished_report(options)
    if report is None:
        from data_engine.build import build

        report = build(options)
    elif options.progress:
        print(
            f"showo-data: {options.out} is complete and nothing it depends on changed (--verify re-hashes)",
            file=sys.stderr,
        )
    print(json.dumps(report))
    return 0


def _add_inspect(subparsers) -> None:
    p = subparsers.add_parser("inspect", help="decode shard codes or latents back to an image grid")
    p.add_argument("directory")
    p.add_argument("--grid", required=True, type=checks.output_file, help="output PNG")
    p.add_argument(
        "--count",
        type=checks.integer(1, MAX_INSPECT),
        default=16,
        help=f"how many samples to show (1..{MAX_INSPECT})",
    )
    p.add_argument(
        "--image-tokenizer",
        "--tokenizer",  # the earlier name, kept as an alias
        dest="image_tokenizer",
        help="override the image tokenizer path the manifest names (identity must match)",
    )
    p.add_argument("--vae", help="override the VAE path the manifest names (identity must match)")
    p.set_defaults(func=_run_inspect)


def _run_inspect(args: argparse.Namespace) -> int:
    from data_engine.inspection import inspect_shards

    for row in inspect_shards(args.directory, args.grid, args.count, args.image_tokenizer, args.vae):
        print(json.dumps(row, ensure_ascii=False))
    print(f"wrote {args.grid}", file=sys.stderr)
    return 0


def _add_stats(subparsers) -> None:
    p = subparsers.add_parser("stats", help="summarise a shard directory as JSON")
    p.add_argument("directory")
    p.add_argument(
        "--verify",
        action="store_true",
        help="also check every shard's sha256, sample count and each sample's grid against the manifest"
        " (latents: dtype and shape are checked always)",
    )
    p.set_defaults(func=_run_stats)


def _run_stats(args: argparse.Namespace) -> int:
    from data_engine.inspection import shard_stats

    print(json.dumps(shard_stats(args.directory, args.verify), indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="showo-data", description="Offline Show-o data engine: pre-tokenized shards.")
    subparsers = parser.add_subparsers(dest="command", required=True)
    _add_build(subparsers)
    _add_inspect(subparsers)
    _add_stats(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_parser(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
