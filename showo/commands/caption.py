"""`showo caption`: describe images or answer a question about them (batched, KV-cached decoding)."""

from __future__ import annotations

import argparse

DEFAULT_QUESTION = "Describe the image."


def register(subparsers: argparse._SubParsersAction) -> None:
    from showo.commands import checks
    from showo.commands.sampler_options import add_pipeline_args

    parser = subparsers.add_parser("caption", help="caption images or answer a question about them")
    add_pipeline_args(parser)
    parser.add_argument(
        "--image",
        type=checks.image_file,
        action="append",
        required=True,
        help="an image file (repeat for several)",
    )
    parser.add_argument(
        "--question", default=DEFAULT_QUESTION, help=f"question (default {DEFAULT_QUESTION!r})"
    )
    parser.add_argument(
        "--max-new-tokens",
        type=checks.max_new_tokens,
        default=64,
        help=f"longest answer in tokens (default 64, at most {checks.MAX_NEW_TOKENS})",
    )
    parser.add_argument(
        "--temperature",
        type=checks.temperature,
        default=0.0,
        help=f"0 = greedy (default), else {checks.MIN_POSITIVE_TEMPERATURE:g}..{checks.MAX_TEMPERATURE:g}",
    )
    parser.add_argument("--top-k", type=checks.top_k, default=None, help="keep the k most likely tokens")
    parser.add_argument("--top-p", type=checks.top_p, default=None, help="nucleus mass in (0, 1]")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from showo.sampling import understand
    from showo.sampling.images import load_image
    from showo.sampling.pipeline import load_pipeline

    images = [load_image(path) for path in args.image]
    pipe = load_pipeline(args.ckpt, args.image_tokenizer, args.device)
    answers = understand.decode(
        pipe.model,
        pipe.prompter,
        pipe.encode_images(images),
        [args.question] * len(images),
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        generator=pipe.generator(args.seed),
        progress=True,
    )
    for path, answer in zip(args.image, answers):
        print(f"{path}\t{answer}" if len(answers) > 1 else answer)
    return 0
