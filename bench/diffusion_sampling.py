"""Diffusion sampling cost: the cached text prefix against recomputing the whole sequence every step.

The diffusion objective's sampler (`showo.sampling.diffusion`) at the tiny scale: a Phi of `--hidden` x
`--layers`, an M=128 text budget, 8-channel latents in 2x2 patches on 8x8 and 16x16 grids of image positions,
T denoising steps with CFG on (w=2: two rows per prompt). Cached: the text prefix's keys and values once,
then each step runs the N+2 positions from [soi] to [eoi]; recompute: the whole [cond | uncond] sequence
every step. Both draw the same noise and give the same latents (checked here as in the tests). Each pair is
timed interleaved, best of `--repeats` after a warm-up. One JSON line.
Run: `.venv/bin/python -m bench.diffusion_sampling [--hidden 256 --layers 4 --steps 20 --repeats 3]`.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import warnings

import torch

from bench.common import bench_llm
from bench.sampling import PROMPT, best_of
from showo.model import ShowO
from showo.sampling import diffusion

CHANNELS, PATCH = 8, 2


def pair(model: ShowO, steps: int, repeats: int) -> dict[str, float]:
    prompter = model.prompter()
    options = model.objective.options(steps=steps, guidance=2.0)

    def run(use_cache: bool):
        return lambda: diffusion.generate(
            model, prompter, [PROMPT], options, torch.Generator().manual_seed(0), use_cache=use_cache
        )

    cached, full = run(True)(), run(False)()
    torch.testing.assert_close(cached, full, rtol=1e-3, atol=1e-3)
    best = best_of({"cached": run(True), "recompute": run(False)}, repeats)
    return {
        "image_positions": model.config.num_image_tokens,
        "cached_s": round(best["cached"], 3),
        "recompute_s": round(best["recompute"], 3),
        "speedup": round(best["recompute"] / best["cached"], 2),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--max-text-len", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (1: stable on a shared machine)"
    )
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    objective = {"image": "diffusion", "latent_channels": CHANNELS, "patch_size": PATCH}
    with tempfile.TemporaryDirectory() as tmp:
        llm_dir = bench_llm(tmp, [PROMPT], args.hidden, args.layers)
        models = {
            side: ShowO.build(llm_dir, None, 16, side * side, args.max_text_len, objective=objective).eval()
            for side in (8, 16)
        }
    for model in models.values():  # a new head predicts zero everywhere; give it an output to compute
        with torch.no_grad():
            model.image_head.proj_out.weight.normal_(0.0, 0.02)
    result = {
        "bench": "diffusion_sampling",
        "device": "cpu",
        "threads": torch.get_num_threads(),
        "hidden": args.hidden,
        "layers": args.layers,
        "max_text_len": args.max_text_len,
        "prompt_tokens": len(models[8].prompter().tokenize([PROMPT])[0]),
        "latent_channels": CHANNELS,
        "patch_size": PATCH,
        "steps": args.steps,
        "guidance": 2.0,
        "repeats": args.repeats,
        "grid_8x8": pair(models[8], args.steps, args.repeats),
        "grid_16x16": pair(models[16], args.steps, args.repeats),
        "goals": {"grid_8x8.speedup": ">= 1.5"},
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
