"""Arguments the inference commands share; kept free of torch so `showo --help` and `showo recipe` start fast."""

from __future__ import annotations

from typing import Any

from showo.errors import ShowoError


def add_pipeline_args(parser: Any, seed: bool = True) -> None:
    """The arguments every inference command shares."""
    parser.add_argument(
        "--ckpt", required=True, help="a Show-o checkpoint directory (showo export / save_pretrained)"
    )
    parser.add_argument(
        "--image-tokenizer", default=None, help="image tokenizer dir (default: <ckpt>/image_tokenizer)"
    )
    parser.add_argument(
        "--device", default=None, help="torch device (default: cuda when available, else cpu)"
    )
    if seed:
        parser.add_argument("--seed", type=int, default=0, help="seed of the sampler's torch.Generator")


def add_maskgit_args(parser: Any, steps: int, guidance: float) -> None:
    """MaskGIT knobs shared by generate, inpaint and extrapolate (defaults from the official demos)."""
    parser.add_argument("--steps", type=int, default=steps, help=f"MaskGIT steps T (default {steps})")
    parser.add_argument("--guidance", type=float, default=guidance, help=f"CFG scale w (default {guidance})")
    parser.add_argument("--temperature", type=float, default=1.0, help="Gumbel remasking temperature tau0")
    parser.add_argument(
        "--temperature-schedule",
        default="maskgit",
        help="maskgit: tau0*(1-t); official: the compounding product of the official sampler",
    )
    parser.add_argument("--schedule", default="cosine", help="mask schedule: cosine|linear|pow2|pow3|sigmoid")


def maskgit_kwargs(args: Any) -> dict[str, Any]:
    """The sampler settings from parsed arguments, validated (so bad ones fail before loading a model)."""
    from showo.masking import mask_ratio
    from showo.sampling.maskgit import check_settings

    check_settings(args.steps, args.guidance, args.temperature_schedule)
    mask_ratio(0.5, args.schedule)
    return dict(
        steps=args.steps,
        guidance=args.guidance,
        temperature=args.temperature,
        temperature_schedule=args.temperature_schedule,
        schedule=args.schedule,
    )


def positive(name: str, value: int) -> int:
    if value < 1:
        raise ShowoError(f"--{name} must be at least 1, got {value}")
    return value
