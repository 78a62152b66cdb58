"""`showo interleave`: mixed-modality generation, text and images in one sequence, written out in order.

The checkpoint's own image objective draws each image (`ImageObjective.sample_frame`: MaskGIT for MTP, token
by token for AR); the text between images is given (`--prompt`, repeatable: the first captions) or decoded
by the model until it opens an image. `--out DIR` receives `000-text.txt`, `001-image.png`, ... in sequence
order and `sequence.json`, which lists them with their kinds and records every setting of the run. A rerun
into the same directory removes the files the previous `sequence.json` listed that this run did not rewrite.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

from showo.safeio import loads_json

SEQUENCE = "sequence.json"
_OURS = re.compile(r"\d{3}-(text\.txt|image\.png)")
"""The names this command writes (only these are ever removed from --out)."""


def register(subparsers: argparse._SubParsersAction) -> None:
    from showo.commands import checks
    from showo.commands.sampler_options import add_pipeline_args, add_sampler_args

    parser = subparsers.add_parser(
        "interleave", help="generate text and images in one sequence (files in order + sequence.json)"
    )
    add_pipeline_args(parser)
    parser.add_argument(
        "--prompt",
        action="append",
        required=True,
        help="the first caption; repeat to give the next frames' captions too (the rest the model writes)",
    )
    parser.add_argument(
        "--frames",
        type=checks.frames,
        default=2,
        help=f"images in the sequence (default 2, 1..{checks.MAX_FRAMES}); fewer when the model ends it",
    )
    parser.add_argument(
        "--text-temperature",
        type=checks.temperature,
        default=0.0,
        help="temperature of the decoded text: 0 = greedy (default), "
        f"else {checks.MIN_POSITIVE_TEMPERATURE:g}..{checks.MAX_TEMPERATURE:g}",
    )
    parser.add_argument(
        "--text-top-k", type=checks.top_k, default=None, help="decoded text: keep the k most likely tokens"
    )
    parser.add_argument(
        "--text-top-p", type=checks.top_p, default=None, help="decoded text: nucleus mass in (0, 1]"
    )
    add_sampler_args(parser, guidance=None)  # mixed rows are trained without a null condition
    parser.add_argument(
        "--out", type=checks.output_dir, required=True, help="directory for the files and sequence.json"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from showo.commands.sampler_options import sampler_options
    from showo.errors import ShowoError
    from showo.sampling import mixed
    from showo.sampling.images import to_pil
    from showo.sampling.pipeline import checkpoint_objective, load_pipeline

    if len(args.prompt) > args.frames:
        raise ShowoError(
            f"{len(args.prompt)} prompts for {args.frames} frames (give at most one caption per frame)"
        )
    objective = checkpoint_objective(args.ckpt)
    options = sampler_options(args, objective)
    pipe = load_pipeline(args.ckpt, args.image_tokenizer, args.device)
    sample = mixed.generate(
        pipe.model,
        pipe.prompter,
        [args.prompt],
        args.frames,
        temperature=args.text_temperature,
        top_k=args.text_top_k,
        top_p=args.text_top_p,
        generator=pipe.generator(args.seed),
        image_options=options,
    )[0]
    images = to_pil(pipe.decode_images(sample.codes)) if len(sample.codes) else []
    entries: list[tuple[str, Any]] = []
    for caption, image in zip(sample.captions, images):
        if caption:  # the model may open an image straight away: no text between two images
            entries.append(("text", caption))
        entries.append(("image", image))
    record = {
        "prompt": list(args.prompt),
        "frames": args.frames,
        "seed": args.seed,
        "objective": objective.name,
        "sampler": objective.sampler,
        "options": asdict(options),
        "text": {"temperature": args.text_temperature, "top_k": args.text_top_k, "top_p": args.text_top_p},
    }
    for path in write_sequence(Path(args.out), entries, record):
        print(path)
    return 0


def write_sequence(out: Path, entries: list[tuple[str, Any]], record: dict[str, Any]) -> list[Path]:
    """Write each (kind, text or PIL image) as `NNN-<kind>.<ext>`, then `sequence.json` listing them in order.

    `sequence.json` comes last, so one that exists describes complete files. A failed write is one line.
    """
    from showo.cli import os_error_message
    from showo.errors import ShowoError

    try:
        out.mkdir(parents=True, exist_ok=True)
        stale = _previous_files(out)
        items, written = [], []
        for index, (kind, value) in enumerate(entries):
            name = f"{index:03d}-{kind}.{'txt' if kind == 'text' else 'png'}"
            if kind == "text":
                (out / name).write_text(value + "\n", encoding="utf-8")
                items.append({"index": index, "kind": kind, "file": name, "text": value})
            else:
                value.save(out / name, format="PNG")
                items.append({"index": index, "kind": kind, "file": name})
            written.append(out / name)
        for name in stale - {path.name for path in written}:
            (out / name).unlink(missing_ok=True)
        (out / SEQUENCE).write_text(json.dumps({**record, "items": items}, indent=2) + "\n", encoding="utf-8")
    except OSError as err:
        raise ShowoError(os_error_message(err, f"cannot write --out {out}")) from None
    return [*written, out / SEQUENCE]


def _previous_files(out: Path) -> set[str]:
    """The file names a previous run's `sequence.json` lists (only names this command writes); none when it
    is missing or unreadable."""
    try:
        items = loads_json((out / SEQUENCE).read_text(encoding="utf-8")).get("items", [])
        names = {item.get("file") for item in items if isinstance(item, dict)}
    except (OSError, ValueError, AttributeError, TypeError):
        return set()
    return {name for name in names if isinstance(name, str) and _OURS.fullmatch(name)}
