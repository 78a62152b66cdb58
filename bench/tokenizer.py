"""Image-tokenizer encode throughput (images/s) at the tiny demo size and the official size.

- tiny: the `recipes/tokenizer/tiny.yaml` architecture at 64 px (16x16 codes), batch 1 and 32;
- official: the 95,387,004-parameter MAGVIT-v2 at 256 px (16x16 codes), batch 1 and 32 (one timed
  batch of 32 by default: about a CPU minute);
- side by side at tiny size, batch 32: our `encode` (signs -> ids under inference mode) against the
  official `get_code` path (the quantizer's full training forward, losses included, then the ids).
Weights are random: throughput does not depend on them. One JSON line.
Run: `.venv/bin/python -m bench.tokenizer [--repeats 5 --official-repeats 1]`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from showo.recipe import load_recipe
from showo.tokenizer import ImageTokenizer, TokenizerConfig


def seconds(fn, x: torch.Tensor, repeats: int, warmup: int = 1) -> float:
    """Median wall seconds of `fn(x)` over `repeats` calls after `warmup` untimed calls."""
    for _ in range(warmup):
        fn(x)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def official_get_code(model: ImageTokenizer, pixels: torch.Tensor) -> torch.Tensor:
    """The official path: encoder, the quantizer's training forward (losses computed), then ids."""
    with torch.no_grad():
        return model.quantize(model.encoder(pixels)).indices.flatten(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per tiny measurement")
    parser.add_argument(
        "--official-repeats", type=int, default=1, help="timed calls per official measurement"
    )
    args = parser.parse_args()
    torch.manual_seed(0)
    result: dict[str, object] = {"bench": "tokenizer", "threads": torch.get_num_threads()}

    tiny = ImageTokenizer(load_recipe("recipes/tokenizer/tiny.yaml").model).eval()
    for batch in (1, 32):
        x = torch.rand(batch, 3, 64, 64) * 2 - 1
        result[f"tiny_64px_b{batch}_images_per_s"] = round(batch / seconds(tiny.encode, x, args.repeats), 2)
    x = torch.rand(32, 3, 64, 64) * 2 - 1
    assert torch.equal(tiny.encode(x), official_get_code(tiny, x))
    ours = seconds(tiny.encode, x, args.repeats)
    theirs = seconds(lambda pixels: official_get_code(tiny, pixels), x, args.repeats)
    result["tiny_b32_official_get_code_over_ours_time"] = round(theirs / ours, 3)

    official = ImageTokenizer(TokenizerConfig()).eval()
    for batch in (1, 32):
        x = torch.rand(batch, 3, 256, 256) * 2 - 1
        warmup = 1 if batch == 1 else 0
        spent = seconds(official.encode, x, args.official_repeats, warmup)
        result[f"official_256px_b{batch}_images_per_s"] = round(batch / spent, 3)
    result["official_b32_over_b1_throughput"] = round(
        result["official_256px_b32_images_per_s"] / result["official_256px_b1_images_per_s"], 3
    )
    result["tiny_b32_over_b1_throughput"] = round(
        result["tiny_64px_b32_images_per_s"] / result["tiny_64px_b1_images_per_s"], 3
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
