"""`showo eval --ckpt DIR --suite NAME [--out results.json]`: one pinned evaluation suite on one model.

The suites' settings are pinned (`showo.eval.suites.SuiteSettings`); an override given here is recorded in
the result next to everything else that changes a score, so every number can be reproduced.
"""

from __future__ import annotations

import argparse

# Named here, not imported from showo.eval.suites, so that `showo --help` does not load torch and scikit-learn;
# tests check the list against SUITES.
SUITE_HELP = "geneval-mini, digits, pope-mini, caption-mini or tokenizer"


def register(subparsers: argparse._SubParsersAction) -> None:
    from showo.commands import checks

    parser = subparsers.add_parser("eval", help="run a pinned evaluation suite (scores + settings as JSON)")
    parser.add_argument(
        "--ckpt",
        required=True,
        help="exported model dir (showo export); a tokenizer dir for --suite tokenizer",
    )
    parser.add_argument("--suite", required=True, help=SUITE_HELP)
    parser.add_argument(
        "--out", type=checks.output_file, default=None, help="write the result JSON here (default: print it)"
    )
    parser.add_argument(
        "--image-tokenizer", default=None, help="image tokenizer dir (default: <ckpt>/image_tokenizer)"
    )
    parser.add_argument(
        "--sheet", type=checks.output_file, default=None, help="also write the generated images as a PNG grid"
    )
    parser.add_argument(
        "--steps",
        type=checks.steps,
        default=None,
        help="MaskGIT or denoising steps (pinned default 12; MTP and diffusion checkpoints)",
    )
    parser.add_argument(
        "--guidance", type=checks.guidance, default=None, help="CFG scale (pinned default 1.5)"
    )
    parser.add_argument(
        "--temperature", type=checks.temperature, default=None, help="remasking temperature (pinned 1.0)"
    )
    parser.add_argument("--seed", type=checks.seed, default=None, help="sampler seed (pinned 0)")
    parser.add_argument(
        "--sampler",
        default=None,
        help="image sampler: the checkpoint's own (maskgit for MTP, ar for AR, diffusion); checked",
    )
    parser.add_argument(
        "--batch-size", type=checks.count, default=None, help="images per forward batch (pinned 16)"
    )
    parser.add_argument(
        "--prompt-template",
        default=None,
        help="understanding prompt: mmu (official inference form, pinned) or instruct (instruction-tuning form)",
    )
    parser.set_defaults(func=run)


def settings_from_args(args: argparse.Namespace):
    """Pinned settings with the given overrides, checked before any model is loaded."""
    from dataclasses import replace

    from showo.errors import ShowoError
    from showo.eval.suites import SUITES, SuiteSettings
    from showo.prompting import PROMPT_TEMPLATES
    from showo.sampling.maskgit import check_settings

    if args.suite not in SUITES:
        raise ShowoError(f"unknown eval suite {args.suite!r}; expected one of {', '.join(SUITES)}")
    changes = {
        key: value
        for key in ("steps", "guidance", "temperature", "seed", "batch_size", "prompt_template")
        if (value := getattr(args, key)) is not None
    }
    settings = replace(SuiteSettings(), **changes)
    if settings.prompt_template not in PROMPT_TEMPLATES:
        raise ShowoError(
            f"--prompt-template must be one of {', '.join(PROMPT_TEMPLATES)}, got {settings.prompt_template!r}"
        )
    check_settings(settings.steps, settings.guidance, "maskgit")
    return settings


def run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from showo.errors import ShowoError
    from showo.eval.suites import run_suite

    settings = settings_from_args(args)
    if not Path(args.ckpt).exists():
        raise ShowoError(f"checkpoint not found: {args.ckpt}")
    if args.suite != "tokenizer":
        from showo.sampling.pipeline import checkpoint_objective

        objective = checkpoint_objective(args.ckpt)
        objective.check_sampler(args.sampler)
        objective.options(steps=args.steps, guidance=args.guidance, temperature=args.temperature)
    result = run_suite(
        args.ckpt,
        args.suite,
        out=args.out,
        settings=settings,
        image_tokenizer=args.image_tokenizer,
        sheet=args.sheet,
    )
    if args.out is None:
        print(json.dumps(result, indent=2))
    else:
        headline = {k: v for k, v in result["scores"].items() if isinstance(v, (int, float))}
        print(f"{args.suite}: {json.dumps(headline)} -> {args.out}")
    return 0
