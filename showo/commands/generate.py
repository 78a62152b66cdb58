"""`showo generate`: text-to-image with the checkpoint's own sampler (MaskGIT, AR or diffusion) and CFG, as one
PNG grid."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    from showo.commands.sampler_options import add_count_arg, add_out_arg, add_pipeline_args, add_sampler_args

    parser = subparsers.add_parser("generate", help="generate images from text prompts (PNG grid)")
    add_pipeline_args(parser)
    parser.add_argument("--prompt", action="append", required=True, help="a text prompt (repeat for several)")
    add_count_arg(parser, "--n", 4, "images per prompt (default 4)")
    add_sampler_args(parser, guidance=1.75)
    add_count_arg(parser, "--batch-size", 8, "images generated per forward batch")
    add_out_arg(parser, "grid.png", "output PNG grid (default grid.png)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch
    from tqdm.auto import tqdm

    from showo.commands.sampler_options import sampler_options, write_grid
    from showo.sampling.pipeline import checkpoint_objective, load_pipeline

    n, batch_size = args.n, args.batch_size
    objective = checkpoint_objective(args.ckpt)
    options = sampler_options(args, objective)
    pipe = load_pipeline(args.ckpt, args.image_tokenizer, args.device)
    prompts = [p for p in args.prompt for _ in range(n)]
    generator = pipe.generator(args.seed)
    codes = []
    for start in tqdm(range(0, len(prompts), batch_size), desc="generate", unit="batch"):
        batch = prompts[start : start + batch_size]
        codes.append(pipe.objective.generate(pipe.model, pipe.prompter, batch, options, generator))
    pixels = pipe.decode_images(torch.cat(codes))
    print(write_grid(pixels, args.out, ncol=n))
    return 0
