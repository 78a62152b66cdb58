"""Training-step cost of the Show-o model core vs a bare transformers Phi on the same ids.

Ours: image-token masking, omni-attention masks for a [t2i | lm | mmu] batch, ShowO forward, the LM head
at the labelled positions only, the per-task losses and backward (and, side by side, the same step with the
head over every position, as the official code computes it). Bare: ``PhiForCausalLM(input_ids, labels=input_ids)`` with its own causal mask, and the
same bare Phi given our dense mask (isolating the cost of a non-causal mask from our own overhead).
Prints one JSON line. Run: ``.venv/bin/python -m bench.model [--steps N]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import warnings

import torch
from transformers import PhiForCausalLM

from bench.common import bench_llm, corpus
from showo.attention import batch_attention_mask
from showo.losses import gather_labelled, labelled_loss, showo_loss
from showo.masking import mask_image_tokens
from showo.model import ShowO

CAPTIONS = [
    f"a {c} {s} and a {c2} {s2}"
    for c, c2 in [("red", "blue"), ("green", "white")]
    for s, s2 in [("circle", "square")]
]


def make_batch(model: ShowO, rows: dict[str, int], gen: torch.Generator):
    pr = model.prompter()
    vocab, n = model.vocab, model.config.num_image_tokens
    img = vocab.codes_to_ids(torch.randint(0, vocab.codebook_size, (rows["t2i"], n), generator=gen))
    t2i = pr.t2i([CAPTIONS[i % len(CAPTIONS)] for i in range(rows["t2i"])], img, img)
    lm = pr.lm([corpus(CAPTIONS)[i] for i in range(rows["lm"])])
    mmu = pr.mmu(
        img[: rows["mmu"]], [f"USER: \nDescribe the image. ASSISTANT: {c}" for c in CAPTIONS][: rows["mmu"]]
    )
    return {"t2i": t2i, "lm": lm, "mmu": mmu}


def our_step(model: ShowO, batch, gen: torch.Generator, labelled_head: bool = True) -> None:
    """One training step; `labelled_head` applies the LM head only where there is a target (training's
    path, `ShowoModule.losses`), otherwise over every position (the official code's full logits)."""
    vocab, m = model.vocab, model.config.max_text_len
    ids, labels = (t.clone() for t in batch["t2i"])
    masked, img_labels = mask_image_tokens(ids[:, m + 2 : -1], vocab.mask_id, "cosine", gen)
    ids[:, m + 2 : -1], labels[:, m + 2 : -1] = masked, img_labels
    parts = [("t2i", ids), ("lm", batch["lm"][0]), ("mmu", batch["mmu"][0])]
    mask = batch_attention_mask(parts, vocab)
    layout = {t: p.shape[0] for t, p in parts}
    all_labels = torch.cat([labels, batch["lm"][1], batch["mmu"][1]])
    coeffs = {"t2i": 1.0, "lm": 0.1, "mmu": 1.0}
    ids = torch.cat([p[1] for p in parts])
    if labelled_head:
        hidden = model.hidden_states(ids, mask)
        picked = gather_labelled(hidden, all_labels, layout, model.llm.lm_head, max_text_len=m)
        out = labelled_loss(picked, coeffs)
    else:
        out = showo_loss(model(ids, mask), all_labels, layout, coeffs, max_text_len=m)
    out["loss"].backward()


def bare_step(llm: PhiForCausalLM, ids: torch.Tensor, mask: torch.Tensor | None) -> None:
    llm(input_ids=ids, attention_mask=mask, labels=ids).loss.backward()


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--codebook", type=int, default=1024)
    parser.add_argument("--grid", type=int, default=16)
    parser.add_argument("--max-text-len", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 keeps shared-CPU noise low)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        llm_dir = bench_llm(tmp, CAPTIONS, args.hidden, args.layers)
        model = ShowO.build(llm_dir, None, args.codebook, args.grid**2, args.max_text_len).train()
    bare = PhiForCausalLM(model.llm.config).train()
    bare.load_state_dict(model.llm.state_dict())
    rows = {"t2i": 4, "lm": 2, "mmu": 2}
    batch = make_batch(model, rows, torch.Generator().manual_seed(0))
    ids = torch.cat([batch["t2i"][0], batch["lm"][0], batch["mmu"][0]])
    dense = batch_attention_mask(
        [("t2i", batch["t2i"][0]), ("lm", batch["lm"][0]), ("mmu", batch["mmu"][0])], model.vocab
    )
    gen = torch.Generator().manual_seed(1)
    runs = {"ours": [], "ours_full_logits": [], "bare_causal": [], "bare_same_mask": []}
    steps = {
        "ours": lambda: our_step(model, batch, gen),
        "ours_full_logits": lambda: our_step(model, batch, gen, labelled_head=False),
        "bare_causal": lambda: bare_step(bare, ids, None),
        "bare_same_mask": lambda: bare_step(bare, ids, dense),
    }
    for i in range(args.steps + 1):  # the first round warms up
        for name, fn in steps.items():
            model.zero_grad(set_to_none=True)
            bare.zero_grad(set_to_none=True)
            t = timed(fn)
            if i:
                runs[name].append(t)
    med = {k: statistics.median(v) for k, v in runs.items()}
    print(
        json.dumps(
            {
                "bench": "model_train_step",
                "batch": rows,
                "seq_len": ids.shape[1],
                "vocab": model.vocab.size,
                "hidden": args.hidden,
                "layers": args.layers,
                "steps": args.steps,
                "threads": args.threads,
                "ours_s": round(med["ours"], 4),
                "ours_full_logits_s": round(med["ours_full_logits"], 4),
                "bare_causal_s": round(med["bare_causal"], 4),
                "bare_same_mask_s": round(med["bare_same_mask"], 4),
                "ratio_vs_bare_causal": round(med["ours"] / med["bare_causal"], 3),
                "ratio_vs_bare_same_mask": round(med["ours"] / med["bare_same_mask"], 3),
                "full_logits_ratio_vs_bare_same_mask": round(
                    med["ours_full_logits"] / med["bare_same_mask"], 3
                ),
                "full_logits_vs_labelled_head": round(med["ours_full_logits"] / med["ours"], 3),
                "goal": "<= 1.10",
            }
        )
    )


if __name__ == "__main__":
    main()
