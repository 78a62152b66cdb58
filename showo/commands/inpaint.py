"""`showo inpaint`: regenerate the white region of a mask picture from a prompt (no fine-tuning)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    from showo.commands import checks
    from showo.commands.sampler_options import add_count_arg, add_maskgit_args, add_out_arg, add_pipeline_args

    parser = subparsers.add_parser("inpaint", help="repaint the white part of --mask guided by --prompt")
    add_pipeline_args(parser)
    parser.add_argument("--image", type=checks.image_file, required=True, help="the image to edit")
    parser.add_argument(
        "--mask",
        type=checks.image_file,
        required=True,
        help="a picture of the image's size: white = repaint",
    )
    parser.add_argument("--prompt", required=True, help="what the repainted region should show")
    add_count_arg(parser, "--n", 4, "variants to generate (default 4)")
    add_maskgit_args(parser, steps=16, guidance=1.75)
    add_out_arg(parser, "inpaint.png", "PNG grid: the input, then the variants")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from showo.commands.sampler_options import maskgit_kwargs, write_grid
    from showo.sampling import canvas
    from showo.sampling.images import decode_codes, encode_image, load_image
    from showo.sampling.pipeline import checkpoint_objective, load_pipeline

    n, settings = args.n, maskgit_kwargs(args)
    checkpoint_objective(args.ckpt).check_sampler("maskgit")  # canvas editing is MaskGIT's
    image, mask_picture = load_image(args.image), load_image(args.mask, mode="L")
    pipe = load_pipeline(args.ckpt, args.image_tokenizer, args.device)
    token_mask = canvas.token_mask_from_image(mask_picture, image.size, pipe.resolution, pipe.grid)
    codes, _ = encode_image(pipe.image_tokenizer, image, pipe.resolution)
    out = canvas.inpaint(
        pipe.model,
        pipe.prompter,
        [args.prompt] * n,
        codes,
        token_mask.to(codes.device),
        generator=pipe.generator(args.seed),
        progress=True,
        **settings,
    )
    pixels = decode_codes(pipe.image_tokenizer, torch.cat([codes, out]), pipe.grid)
    print(write_grid(pixels, args.out, ncol=n + 1))
    return 0
