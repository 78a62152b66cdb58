"""Sequence packing on the CPU: non-pad tokens per second of a training step, packed vs padded.

The paper's stage-2 rows per GPU (10 t2i + 4 lm + 10 mmu) in the official layout (M = 128 text tokens,
16x16 codes, L = 387) on a tiny Phi (hidden 128, 4 layers): t2i and mmu texts are the embedded shapes
captions (what the demo's template recaptioner writes into its shards), or with ``--captions SHARDS`` the
captions of your own built shards, to see what packing gives on your data; t2i drops 10% of them for
classifier-free guidance, as the official rows do. lm rows are pydoc text. Side by
side, each with the labelled-head per-task losses and backward (checked equal before timing):

- ``padded``: the official rows under the dense omni mask (``ShowO.hidden_states``);
- ``packed_one_row`` / ``packed_<budget>``: what training runs with ``data.pack_tokens`` on an sdpa model
  (``showo.packing.packed_hidden_states``: pads dropped, per-sample attention in length buckets), with a
  budget holding the whole micro-batch or rows of ``--budget`` tokens;
- ``dense_mask_packed_<budget>``: the same packed rows under one block-diagonal additive mask (the eager
  way), whose attention pays for every pair across samples.

Also reports the share of 128x128 attention blocks the omni block mask skips, unpacked and packed.
Run: ``.venv/bin/python -m bench.throughput [--steps 6]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import warnings

import numpy as np
import torch

from bench.common import bench_llm, corpus
from showo.attention import batch_attention_mask, batch_block_mask
from showo.data.reader import read_shards
from showo.data.shards import expand_shards
from showo.embedded import shapes
from showo.errors import ShowoError
from showo.losses import gather_labelled, labelled_loss
from showo.masking import mask_image_tokens
from showo.model import ShowO
from showo.packing import pack, packed_attention_mask, packed_block_mask, packed_hidden_states, unpack

ROWS = {"t2i": 10, "lm": 4, "mmu": 10}
COEFFS = {"t2i": 1.0, "lm": 0.1, "mmu": 1.0}


def shard_captions(pattern: str) -> list[str]:
    """Every caption (``txt``) of the shards a glob or brace pattern names, read as training reads them."""
    urls = expand_shards([pattern], "--captions")
    captions = [s["txt"] for s in read_shards(urls, None) if isinstance(s.get("txt"), str)]
    if not captions:
        raise ShowoError(f"--captions: the shards of {pattern!r} hold no captions (txt)")
    return captions


def make_rows(
    model: ShowO, seed: int, pool: list[str] | None = None
) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    """One step's rows; t2i and mmu captions drawn from ``pool`` (a shard's), else the embedded shapes'."""
    pr, vocab, m = model.prompter(cond_dropout_prob=0.1), model.vocab, model.config.max_text_len
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    count = ROWS["t2i"] + ROWS["mmu"]
    if pool:
        captions = [pool[i] for i in rng.integers(0, len(pool), count)]
    else:
        captions = [shapes.caption(shapes.sample_scene(rng)) for _ in range(count)]
    img = vocab.codes_to_ids(
        torch.randint(0, vocab.codebook_size, (ROWS["t2i"], pr.num_image_tokens), generator=gen)
    )
    ids, labels = pr.t2i(captions[: ROWS["t2i"]], img, img, gen)
    masked, targets = mask_image_tokens(ids[:, m + 2 : -1], vocab.mask_id, "cosine", gen)
    ids[:, m + 2 : -1], labels[:, m + 2 : -1] = masked, targets
    texts = corpus([])
    lm = pr.lm([texts[(seed * ROWS["lm"] + i) % 40] for i in range(ROWS["lm"])])
    mmu = pr.mmu(
        img[: ROWS["mmu"]], [f"USER: \nDescribe the image. ASSISTANT: {c}" for c in captions[ROWS["t2i"] :]]
    )
    return [("t2i", ids, labels), ("lm", *lm), ("mmu", *mmu)]


def losses(model: ShowO, rows, mode: str, budget: int = 0) -> dict[str, torch.Tensor]:
    """Per-task losses of one step: ``padded`` rows, ``packed`` the training way (sdpa: per-sample
    segments), or ``dense`` (packed rows under one block-diagonal additive mask, the eager way)."""
    parts = [(task, ids) for task, ids, _ in rows]
    if mode == "packed":
        hidden = torch.cat(packed_hidden_states(model, parts, budget)[0])
    elif mode == "dense":
        ids = torch.cat([p for _, p in parts])
        packed = pack(ids, model.vocab.pad_id, budget)
        rules = [task for task, p in parts for _ in range(len(p))]
        mask = packed_attention_mask(packed, ids, rules, model.vocab)
        hidden = unpack(model.hidden_states(packed.ids, mask, position_ids=packed.position_ids), packed)
    else:
        ids = torch.cat([p for _, p in parts])
        hidden = model.hidden_states(ids, batch_attention_mask(parts, model.vocab))
    labels = torch.cat([lab for _, _, lab in rows])
    layout = {task: len(p) for task, p in parts}
    picked = gather_labelled(
        hidden, labels, layout, model.llm.lm_head, max_text_len=model.config.max_text_len
    )
    return labelled_loss(picked, COEFFS)


def step(model: ShowO, rows, mode: str, budget: int) -> float:
    start = time.perf_counter()
    losses(model, rows, mode, budget)["loss"].backward()
    model.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def skipped_blocks(mask) -> float:
    full = mask.full_kv_num_blocks.sum().item() if mask.full_kv_num_blocks is not None else 0
    visited = mask.kv_num_blocks.sum().item() + full
    return round(1 - visited / (mask.kv_num_blocks.numel() * mask.kv_num_blocks.shape[-1]), 4)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 keeps shared-CPU noise low)")
    parser.add_argument(
        "--budget",
        type=int,
        default=580,
        help="row length of the row-packed modes (1.5 L: two image samples)",
    )
    parser.add_argument(
        "--captions",
        help="shards (glob or brace pattern) whose captions replace the embedded shapes captions",
    )
    args = parser.parse_args(argv)
    try:
        pool = shard_captions(args.captions) if args.captions else None
    except ShowoError as err:
        print(f"throughput: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        llm_dir = bench_llm(tmp, [], hidden=128, layers=4)
        model = ShowO.build(llm_dir, None, 1024, 256, 128).train()
    batches = [make_rows(model, seed, pool) for seed in range(args.steps + 1)]
    pad = model.vocab.pad_id
    all_ids = [torch.cat([r[1] for r in rows]) for rows in batches[1:]]
    one_row = max(int((ids != pad).sum()) for ids in all_ids)
    # mode name -> (losses mode, budget)
    modes = {
        "padded": ("padded", 0),
        "packed_one_row": ("packed", one_row),
        f"packed_{args.budget}": ("packed", args.budget),
        f"dense_mask_packed_{args.budget}": ("dense", args.budget),
    }
    with torch.no_grad():
        ref = losses(model, batches[0], "padded")
        for mode, budget in modes.values():
            got = losses(model, batches[0], mode, budget)
            assert all(torch.allclose(ref[k], got[k], atol=1e-5) for k in ref), f"{mode} losses differ"
    times: dict[str, list[float]] = {name: [] for name in modes}
    for i, rows in enumerate(batches):
        for name, (mode, budget) in modes.items():
            t = step(model, rows, mode, budget)
            if i:  # the first round warms up
                times[name].append(t)
    nonpad = sum(int((ids != pad).sum()) for ids in all_ids) / args.steps
    med = {k: statistics.median(v) for k, v in times.items()}
    ids0 = all_ids[0]
    parts = [(task, ids) for task, ids, _ in batches[1]]
    rules = [task for task, p in parts for _ in range(len(p))]
    result = {
        "bench": "throughput_packing",
        "rows": ROWS,
        "captions": args.captions or "embedded shapes",
        "seq_len": ids0.shape[1],
        "threads": args.threads,
        "steps": args.steps,
        "pad_fraction_padded": round(1 - nonpad / ids0.numel(), 4),
    }
    for name, (mode, budget) in modes.items():
        if mode != "padded":
            positions = statistics.mean(pack(ids, pad, budget).ids.numel() for ids in all_ids)
            result[f"pad_fraction_{name}"] = round(1 - nonpad / positions, 4)
    for name in modes:
        result[f"{name}_step_s"] = round(med[name], 4)
        result[f"{name}_nonpad_tokens_per_s"] = round(nonpad / med[name], 1)
    for name in list(modes)[1:]:
        # per round (the same batch, back to back), then the median: slow drifts of a shared machine cancel
        ratios = [a / b for a, b in zip(times["padded"], times[name])]
        result[f"{name}_over_padded"] = round(statistics.median(ratios), 3)
    # a step whose cost were all per position could gain at most this (the constant part: the labelled head)
    result["position_bound"] = round(ids0.numel() / nonpad, 3)
    result["goal"] = "packed_one_row_over_padded >= 1.3"
    result["block_mask_skipped_padded"] = skipped_blocks(batch_block_mask(parts, model.vocab))
    result[f"block_mask_skipped_packed_{args.budget}"] = skipped_blocks(
        packed_block_mask(pack(ids0, pad, args.budget), ids0, rules, model.vocab)
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
