"""`showo extrapolate`: extend an image beyond its borders, one direction after another (no fine-tuning)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    from showo.commands import checks
    from showo.commands.sampler_options import add_count_arg, add_maskgit_args, add_out_arg, add_pipeline_args

    parser = subparsers.add_parser("extrapolate", help="extend an image left/right/up/down guided by prompts")
    add_pipeline_args(parser)
    parser.add_argument("--image", type=checks.image_file, required=True, help="the image to extend")
    parser.add_argument(
        "--direction",
        action="append",
        required=True,
        help="left|right|up|down (repeat, or comma-separate, to chain)",
    )
    parser.add_argument(
        "--prompt", action="append", required=True, help="one prompt for every step, or one per direction"
    )
    parser.add_argument(
        "--offset",
        type=checks.integer(-checks.MAX_GRID, checks.MAX_GRID),
        default=0,
        help="extra new lines per step beyond half a grid (g/2 + offset must stay inside (0, g))",
    )
    add_count_arg(parser, "--n", 1, "variants to generate (default 1)")
    add_maskgit_args(parser, steps=16, guidance=1.75)
    add_out_arg(parser, "extrapolate.png", "output PNG (variants side by side)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from showo.commands.sampler_options import maskgit_kwargs, write_grid
    from showo.errors import ShowoError
    from showo.sampling import canvas
    from showo.sampling.images import decode_codes, encode_image, load_image
    from showo.sampling.pipeline import checkpoint_objective, load_pipeline

    directions = [d.strip() for item in args.direction for d in item.split(",") if d.strip()]
    for direction in directions:
        if direction not in canvas.DIRECTIONS:
            raise ShowoError(
                f"unknown direction {direction!r} (expected one of {', '.join(canvas.DIRECTIONS)})"
            )
    if len(args.prompt) not in (1, len(directions)):
        raise ShowoError(
            f"{len(args.prompt)} prompts for {len(directions)} directions (give 1 or one per direction)"
        )
    prompts = args.prompt * len(directions) if len(args.prompt) == 1 else args.prompt
    n, settings = args.n, maskgit_kwargs(args)
    checkpoint_objective(args.ckpt).check_sampler("maskgit")  # canvas editing is MaskGIT's
    image = load_image(args.image)
    pipe = load_pipeline(args.ckpt, args.image_tokenizer, args.device)
    codes, grid = encode_image(pipe.image_tokenizer, image, pipe.resolution)
    board = codes.view(1, *grid).expand(n, -1, -1)
    generator = pipe.generator(args.seed)
    for direction, prompt in zip(directions, prompts):
        board = canvas.extrapolate(
            pipe.model,
            pipe.prompter,
            [prompt] * n,
            board,
            direction,
            offset=args.offset,
            generator=generator,
            progress=True,
            **settings,
        )
    pixels = decode_codes(pipe.image_tokenizer, board.reshape(n, -1), tuple(board.shape[1:]))
    print(write_grid(pixels, args.out, ncol=n))
    return 0
