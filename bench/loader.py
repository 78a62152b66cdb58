"""Input pipeline headroom: samples/s the training loader delivers vs samples/s the training step consumes.

Tiny stage-2 recipe (recipes/tiny/stage2.yaml: t2i 8 + lm 2 + mmu 8 rows per step, 16x16 codes, M = 32) over
synthetic shards that follow the shard contract, and the demo's tiny LLM built on the fly. Both sides run on the same
combined batches: the loader (webdataset streams, tokenization and prompting in the workers, CombinedLoader)
with the recipe's workers and with none, and the training step (device masking, omni-attention masks,
forward, losses, backward, AdamW step). Prints one JSON line; the goal is loader/step >= 20.
Run: ``.venv/bin/python -m bench.loader [--steps N]``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import webdataset as wds

from showo.data.datamodule import ShowoDataModule
from showo.demo import budget
from showo.recipe import load_recipe
from showo.tiny_llm import build_tiny_llm
from showo.training.init import build_model
from showo.training.module import ShowoModule
from showo.training.optim import build_optimizer

REPO = Path(__file__).resolve().parents[1]
COLORS = ["red", "green", "blue", "yellow", "purple", "orange"]
SHAPES = ["circle", "square", "triangle", "star"]


def corpus() -> list[str]:
    from pydoc_data.topics import topics

    return [topics[k] for k in sorted(topics)[:80]]


def write_shards(root: Path, codebook: int, tokens: int) -> dict[str, str]:
    rng = np.random.default_rng(0)
    (root / "img").mkdir(parents=True)
    (root / "text").mkdir(parents=True)
    with wds.ShardWriter(str(root / "img" / "shapes-%06d.tar"), maxcount=100, verbose=0) as sink:
        for i in range(400):
            caption = (
                f"a {COLORS[i % 6]} {SHAPES[i % 4]} left of a {COLORS[(i + 2) % 6]} {SHAPES[(i + 1) % 4]}"
            )
            sink.write(
                {
                    "__key__": f"s{i:06d}",
                    "codes.npy": rng.integers(0, codebook, tokens).astype(np.uint16),
                    "txt": caption,
                    "json": {"task": "image_text", "grid": [16, 16]},
                }
            )
    with wds.ShardWriter(str(root / "text" / "text-%06d.tar"), maxcount=40, verbose=0) as sink:
        for i, doc in enumerate(corpus()):
            sink.write({"__key__": f"t{i:06d}", "txt": doc, "json": {"task": "lm"}})
    return {"img": str(root / "img" / "*.tar"), "text": str(root / "text" / "*.tar")}


def loader_rate(dm: ShowoDataModule, steps: int) -> tuple[float, list]:
    it = iter(dm.train_dataloader())
    batches = [next(it)[0] for _ in range(3)]  # workers started, shuffle buffers filled
    start = time.perf_counter()
    batches += [next(it)[0] for _ in range(steps)]
    elapsed = time.perf_counter() - start
    return steps * sum(dm.batch_sizes.values()) / elapsed, batches


def step_rate(module: ShowoModule, batches: list, steps: int, rows: int) -> float:
    optimizer, scheduler = build_optimizer(module.model, module.recipe.optim)

    def step(batch) -> None:
        generator = module.generator(int(batch["t2i"]["step"]))
        parts = {t: module.mask_images(t, b["input_ids"], b["labels"], generator) for t, b in batch.items()}
        out, _ = module.losses(parts)
        out["loss"].backward()
        torch.nn.utils.clip_grad_norm_(module.model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)

    step(batches[0])
    start = time.perf_counter()
    for batch in itertools.islice(itertools.cycle(batches), steps):
        step(batch)
    return steps * rows / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        demo = budget("full")  # the LLM the demo trains, so the step rate is the tiny stage's own
        llm = build_tiny_llm(tmp / "llm", corpus(), vocab_size=demo.llm_vocab, **demo.llm)
        base = load_recipe(REPO / "recipes" / "tiny" / "stage2.yaml")
        shards = write_shards(tmp / "shards", base.model.codebook_size, base.model.num_image_tokens)
        overrides = [
            f"model.llm={llm}",
            f"model.image_tokenizer={tmp}",
            f"run.output_dir={tmp}",
            "init_from=null",
            f'data.streams.t2i.shards=["{shards["img"]}"]',
            f'data.streams.mmu.shards=["{shards["img"]}"]',
            f'data.streams.lm.shards=["{shards["text"]}"]',
        ]
        recipe = load_recipe(REPO / "recipes" / "tiny" / "stage2.yaml", overrides)
        model = build_model(recipe)
        prompter = model.prompter(recipe.objective.cond_dropout_prob)
        rates = {}
        for workers in sorted({recipe.data.num_workers, 0}):
            recipe.data.num_workers = workers
            dm = ShowoDataModule(recipe.data, prompter, recipe.run.seed, recipe.trainer.checkpoint_every)
            rates[workers], batches = loader_rate(dm, args.steps)
        rows = sum(dm.batch_sizes.values())
        consumed = step_rate(ShowoModule(model, recipe), batches, max(3, args.steps // 4), rows)
    workers = max(rates)
    print(
        json.dumps(
            {
                "bench": "loader",
                "recipe": "recipes/tiny/stage2.yaml",
                "rows_per_step": rows,
                "seq_len": recipe.model.seq_len,
                "loader_workers": workers,
                "loader_samples_per_s": round(rates[workers], 1),
                "loader_samples_per_s_no_workers": round(rates[0], 1),
                "train_step_samples_per_s": round(consumed, 1),
                "headroom_x": round(rates[workers] / consumed, 1),
                "headroom_x_no_workers": round(rates[0] / consumed, 1),
                "goal_x": 20,
                "torch_threads": torch.get_num_threads(),
            }
        )
    )


if __name__ == "__main__":
    main()
