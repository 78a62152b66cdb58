"""Sampling cost: KV-cached samplers against full recompute (the official way), measured side by side.

- MaskGIT, T=18, CFG on (w=2, so 2 rows per prompt), 16x16 and 32x32 grids, M=128 text budget: our cached
  sampler (text prefix cached once; each step runs the N+2 image positions through the layers and the
  head only over the still-masked positions' code columns) against `use_cache=False` (every step recomputes the whole [cond | uncond] sequence and the full
  head, as the official `t2i_generate`).
- Understanding decode of exactly 32 new tokens (end of text disabled), batch 1 and 8: prefill + one token
  per step on the cache against recomputing the whole sequence per token.
- MaskGIT T=18 against the AR sampler over the same 256 tokens (both cached, CFG on).
Each pair is timed interleaved, best of `--repeats` after a warm-up. One JSON line (about 7 minutes
on one CPU thread).
Run: `.venv/bin/python -m bench.sampling [--hidden 256 --layers 4 --repeats 3 --threads 1]`.
"""

from __future__ import annotations

import argparse
import copy
import json
import tempfile
import time
import warnings

import torch

from bench.common import bench_llm
from showo.model import ShowO
from showo.sampling import ar, maskgit, understand

PROMPT = (
    "a photograph of a red circle to the left of a blue square and a green triangle above them, on a "
    "gray background, centred, sharp, soft light, high detail"
)


def best_of(fns: dict[str, callable], repeats: int) -> dict[str, float]:
    """Fastest seconds per function over `repeats` interleaved rounds, after one warm-up call of the first.

    The minimum, as `timeit` advises: on a shared machine every slower run is someone else's load.
    """
    next(iter(fns.values()))()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: min(values) for name, values in times.items()}


def maskgit_pair(model: ShowO, steps: int, repeats: int) -> dict[str, float]:
    prompter = model.prompter()

    def run(use_cache: bool):
        gen = torch.Generator().manual_seed(0)
        return lambda: maskgit.generate(
            model, prompter, [PROMPT], steps, 2.0, generator=gen, use_cache=use_cache
        )

    best = best_of({"cached": run(True), "recompute": run(False)}, repeats)
    return {
        "cached_s": round(best["cached"], 3),
        "recompute_s": round(best["recompute"], 3),
        "speedup": round(best["recompute"] / best["cached"], 2),
    }


def decode_pair(model: ShowO, batch: int, new_tokens: int, repeats: int) -> dict[str, float]:
    prompter, vocab = model.prompter(), model.vocab
    gen = torch.Generator().manual_seed(batch)
    images = vocab.codes_to_ids(
        torch.randint(0, vocab.codebook_size, (batch, model.config.num_image_tokens), generator=gen)
    )
    questions = ["What is in the image?", "Describe the image in detail, please."] * batch

    def run(use_cache: bool):
        return lambda: understand.decode_ids(
            model, prompter, images, questions[:batch], new_tokens, use_cache=use_cache
        )

    lengths = {len(row) for row in run(True)()}
    assert lengths == {new_tokens}, lengths
    best = best_of({"cached": run(True), "recompute": run(False)}, repeats)
    return {
        "cached_s": round(best["cached"], 3),
        "recompute_s": round(best["recompute"], 3),
        "speedup": round(best["recompute"] / best["cached"], 2),
    }


def maskgit_vs_ar(model: ShowO, steps: int, repeats: int) -> dict[str, float]:
    prompter = model.prompter()
    fns = {
        "maskgit": lambda: maskgit.generate(
            model, prompter, [PROMPT], steps, 2.0, generator=torch.Generator().manual_seed(0)
        ),
        "ar": lambda: ar.generate(model, prompter, [PROMPT], 2.0, generator=torch.Generator().manual_seed(0)),
    }
    best = best_of(fns, repeats)
    return {
        "maskgit_s": round(best["maskgit"], 3),
        "ar_s": round(best["ar"], 3),
        "ar_over_maskgit": round(best["ar"] / best["maskgit"], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--codebook", type=int, default=8192)
    parser.add_argument("--max-text-len", type=int, default=128)
    parser.add_argument("--steps", type=int, default=18)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (1: stable on a shared machine)"
    )
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        llm_dir = bench_llm(tmp, [PROMPT], args.hidden, args.layers)
        models = {
            side: ShowO.build(llm_dir, None, args.codebook, side * side, args.max_text_len).eval()
            for side in (16, 32)
        }
    decoder = copy.deepcopy(models[16])
    with torch.no_grad():  # decode exactly --new-tokens tokens in every run
        decoder.llm.lm_head.bias[decoder.vocab.eos_id] = -1e4
    prompt_tokens = len(models[16].prompter().tokenize([PROMPT])[0])
    result = {
        "bench": "sampling",
        "device": "cpu",
        "threads": torch.get_num_threads(),
        "hidden": args.hidden,
        "layers": args.layers,
        "vocab": models[16].vocab.size,
        "codebook": args.codebook,
        "max_text_len": args.max_text_len,
        "prompt_tokens": prompt_tokens,
        "steps": args.steps,
        "guidance": 2.0,
        "repeats": args.repeats,
        "maskgit_16x16": maskgit_pair(models[16], args.steps, args.repeats),
        "maskgit_32x32": maskgit_pair(models[32], args.steps, args.repeats),
        "decode_32_batch1": decode_pair(decoder, 1, args.new_tokens, args.repeats),
        "decode_32_batch8": decode_pair(decoder, 8, args.new_tokens, args.repeats),
        "maskgit_vs_ar_256": maskgit_vs_ar(models[16], args.steps, args.repeats),
        "goals": {"maskgit_16x16.speedup": ">= 1.5", "decode_32_batch1/8.speedup": ">= 5"},
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
