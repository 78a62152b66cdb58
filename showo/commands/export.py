"""`showo export --ckpt PATH --out DIR`: a training checkpoint (DeepSpeed dirs too) -> a model directory."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    from showo.commands import checks

    parser = subparsers.add_parser(
        "export", help="turn a training checkpoint into a loadable model directory"
    )
    parser.add_argument(
        "--ckpt", required=True, help="checkpoint file/dir, or a run dir (its last checkpoint)"
    )
    parser.add_argument(
        "--out",
        type=checks.output_dir,
        required=True,
        help="output directory (ShowO.from_pretrained loads it)",
    )
    parser.add_argument("--image-tokenizer", default=None, help="image tokenizer dir (default: the recipe's)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from showo.training.export import export

    out = export(args.ckpt, args.out, args.image_tokenizer)
    print(f"exported {args.ckpt} -> {out}")
    return 0
