"""`showo caption`: describe images or answer a question about them (batched, KV-cached decoding)."""

from __future__ import annotations

import argparse

DEFAULT_QUESTION = "Describe the image."


def register(subparsers: argparse._SubParsersAction) -> None:
    from showo.commands.sampler_options import add_pipeline_args

    parser = subparsers.add_parser("caption", help="caption images or answer a question about them")
    add_pipeline_args(parser)
    parser.add_argument("--image", action="append", required=True, help="an image file (repeat for several)")
    parser.add_argument(
        "--question", default=DEFAULT_QUESTION, help=f"question (default {DEFAULT_QUESTION!r})"
    )
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    parser.add_argument("--top-k", type=int, default=None)
    parser.add_argument("--top-p", type=float, default=None)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from showo.commands.sampler_options import positive
    from showo.sampling import understand
    from showo.sampling.images import encode_images, load_image
    from showo.sampling.pipeline import load_pipeline

    max_new = positive("max-new-tokens", args.max_new_tokens)
    images = [load_image(path) for path in args.image]
    pipe = load_pipeline(args.ckpt, args.image_tokenizer, args.device)
    codes = encode_images(pipe.image_tokenizer, images, pipe.resolution)
    answers = understand.decode(
        pipe.model,
        pipe.prompter,
        pipe.model.vocab.codes_to_ids(codes),
        [args.question] * len(images),
        max_new_tokens=max_new,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        generator=pipe.generator(args.seed),
        progress=True,
    )
    for path, answer in zip(args.image, answers):
        print(f"{path}\t{answer}" if len(answers) > 1 else answer)
    return 0
