"""Arguments the inference commands share; kept free of torch so `showo --help` and `showo recipe` start fast.

Numbers and paths are checked by argparse (`showo.commands.checks`), so a bad one is refused before a model
loads; the range limits are listed there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from showo.commands import checks
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
        "--device",
        type=checks.device,
        default=None,
        help="auto | cpu | cuda[:N] (default: cuda when available, else cpu)",
    )
    if seed:
        parser.add_argument(
            "--seed", type=checks.seed, default=0, help="seed of the sampler's torch.Generator (0..2**64-1)"
        )


def add_count_arg(parser: Any, name: str, default: int, help: str) -> None:
    """`--n` / `--batch-size`: 1..MAX_N."""
    parser.add_argument(name, type=checks.count, default=default, help=f"{help} (1..{checks.MAX_N})")


def add_maskgit_args(parser: Any, steps: int, guidance: float) -> None:
    """MaskGIT knobs of inpaint and extrapolate (canvas editing is MaskGIT's; defaults: the official demos)."""
    defaults = {
        "temperature": 1.0,
        "temperature_schedule": "maskgit",
        "schedule": "cosine",
        "draw": "inverse_cdf",
    }
    _add_options(parser, guidance, {"steps": steps, **defaults}, token_by_token=False)


def add_sampler_args(parser: Any, guidance: float | None) -> None:
    """`--sampler` and the options of every image sampler; each takes only its own (a MaskGIT-only option
    given to an AR checkpoint is an error, not silently dropped). Unset ones take the sampler's defaults.
    `guidance` None: no `--guidance` (a command whose images are drawn without a null condition)."""
    parser.add_argument(
        "--sampler",
        default=None,
        help="maskgit (MTP checkpoints), ar (AR) or diffusion (diffusion); default and only choice: the "
        "checkpoint's own",
    )
    _add_options(parser, guidance, {}, token_by_token=True)


def _add_options(parser: Any, guidance: float | None, defaults: dict[str, Any], token_by_token: bool) -> None:
    """The sampler options; those missing from `defaults` default to None (the sampler's own default)."""
    parser.add_argument(
        "--steps",
        type=checks.steps,
        default=defaults.get("steps"),
        help=f"MaskGIT or denoising steps (default {defaults.get('steps', 'the sampler')}, at most "
        f"{checks.MAX_STEPS})",
    )
    if guidance is not None:
        parser.add_argument(
            "--guidance",
            type=checks.guidance,
            default=guidance,
            help=f"CFG scale w, 0..{checks.MAX_GUIDANCE:g} (default {guidance})",
        )
    parser.add_argument(
        "--temperature",
        type=checks.temperature,
        default=defaults.get("temperature"),
        help="MaskGIT: Gumbel remasking tau0; AR: code sampling temperature, 0 = greedy (default 1.0; "
        f"0 or {checks.MIN_POSITIVE_TEMPERATURE:g}..{checks.MAX_TEMPERATURE:g})",
    )
    parser.add_argument(
        "--temperature-schedule",
        default=defaults.get("temperature_schedule"),
        help="MaskGIT: maskgit (tau0*(1-t), default) or official (the official compounding product)",
    )
    parser.add_argument(
        "--schedule",
        default=defaults.get("schedule"),
        help="MaskGIT mask schedule: cosine|linear|pow2|pow3|sigmoid",
    )
    parser.add_argument(
        "--draw",
        choices=("inverse_cdf", "multinomial"),
        default=defaults.get("draw"),
        help="MaskGIT code draw: inverse_cdf (ours, default), or multinomial to match an official seed's draws",
    )
    if token_by_token:
        parser.add_argument(
            "--top-k", type=checks.count, default=None, help="AR: keep the k most likely codes"
        )
        parser.add_argument("--top-p", type=checks.top_p, default=None, help="AR: nucleus mass in (0, 1]")
        parser.add_argument(
            "--solver",
            choices=("ddim", "ddpm", "euler"),
            default=None,
            help="diffusion: ddim (epsilon default) or ddpm (ancestral) for epsilon-prediction, euler for flow",
        )


def sampler_options(args: Any, objective: Any) -> Any:
    """The checkpoint's sampler and its options from parsed arguments (checked before weights load)."""
    objective.check_sampler(args.sampler)
    names = (
        "steps",
        "guidance",
        "temperature",
        "temperature_schedule",
        "schedule",
        "draw",
        "top_k",
        "top_p",
        "solver",
    )
    return objective.options(**{name: getattr(args, name, None) for name in names})


def add_out_arg(parser: Any, default: str, help: str) -> None:
    """`--out`: a PNG file to write (refused up front when it names a directory)."""
    parser.add_argument("--out", type=checks.output_file, default=default, help=help)


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
        draw=args.draw,
    )


def write_grid(pixels: Any, out: str, ncol: int) -> Path:
    """Save the PNG grid; a failed write (disk full, read-only, no permission) is one line naming --out."""
    from showo.cli import os_error_message
    from showo.sampling.images import save_grid

    try:
        return save_grid(pixels, out, ncol=ncol)
    except OSError as err:
        raise ShowoError(os_error_message(err, f"cannot write --out {out}")) from None
