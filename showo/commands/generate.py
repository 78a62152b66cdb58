"""`showo generate`: text-to-image with MaskGIT (or the AR sampler) and CFG, written as one PNG grid."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    from showo.commands.sampler_options import add_count_arg, add_maskgit_args, add_out_arg, add_pipeline_args

    parser = subparsers.add_parser("generate", help="generate images from text prompts (PNG grid)")
    add_pipeline_args(parser)
    parser.add_argument("--prompt", action="append", required=True, help="a text prompt (repeat for several)")
    add_count_arg(parser, "--n", 4, "images per prompt (default 4)")
    add_maskgit_args(parser, steps=18, guidance=1.75)
    parser.add_argument(
        "--sampler", default="maskgit", help="maskgit (MTP models) or ar (AR-objective models)"
    )
    add_count_arg(parser, "--batch-size", 8, "images generated per forward batch")
    add_out_arg(parser, "grid.png", "output PNG grid (default grid.png)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch
    from tqdm.auto import tqdm

    from showo.commands.sampler_options import maskgit_kwargs, write_grid
    from showo.errors import ShowoError
    from showo.sampling import ar, maskgit
    from showo.sampling.images import decode_codes
    from showo.sampling.pipeline import load_pipeline

    if args.sampler not in ("maskgit", "ar"):
        raise ShowoError(f"unknown sampler {args.sampler!r} (expected maskgit or ar)")
    n, batch_size = args.n, args.batch_size
    settings = maskgit_kwargs(args)
    pipe = load_pipeline(args.ckpt, args.image_tokenizer, args.device)
    prompts = [p for p in args.prompt for _ in range(n)]
    generator = pipe.generator(args.seed)
    codes = []
    for start in tqdm(range(0, len(prompts), batch_size), desc="generate", unit="batch"):
        batch = prompts[start : start + batch_size]
        if args.sampler == "ar":
            codes.append(ar.generate(pipe.model, pipe.prompter, batch, args.guidance, generator=generator))
        else:
            codes.append(maskgit.generate(pipe.model, pipe.prompter, batch, generator=generator, **settings))
    pixels = decode_codes(pipe.image_tokenizer, torch.cat(codes), pipe.grid)
    print(write_grid(pixels, args.out, ncol=n))
    return 0
