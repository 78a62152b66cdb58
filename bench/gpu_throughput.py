"""Training throughput of a Phi-1.5-size Show-o on one accelerator: dense-mask SDPA (official) against flex.

The stage-2 step of the paper recipe per GPU: 10 t2i + 4 lm + 10 mmu rows of L = M + N + 3 = 387 tokens
(M = 128 text, N = 256 image codes), bf16 autocast over fp32 weights, AdamW, random weights (throughput does
not depend on them). The rows come from our own `Prompter`, masking (`mask_image_tokens`), omni-attention
rule and labelled-head losses; only the text tokenizer is a stand-in (one id per word, hashed into Phi-1.5's
50,295 text ids), with caption lengths drawn like recaptioned data (half cut to a first sentence of 8-30
words, half 40-120 words) and lm rows filled to L as long web documents are.

Modes: ``sdpa`` (the official way: a dense additive ``[B, 1, L, L]`` mask, which no flash kernel takes) and
``flex`` (``attn_implementation="flex"``, the same rule as a FlexAttention ``BlockMask``, built every step
through ``torch.compile`` and counted in the step), each optionally with sequence packing, ``+pack<T>``
(``showo.packing``: pads dropped, samples packed into rows of T tokens, document-aware attention: flex skips
the blocks across samples, sdpa attends per sample in length buckets, as training does). Reports, per mode:
tokens/s (all and non-pad), model FLOPs utilisation (6 x parameters x tokens, as ``showo recipe plan`` counts,
over the device's dense bf16 peak) and peak memory; plus the fraction of attention blocks the block mask
skips. Without CUDA it prints a skip line (``make bench`` runs on CPUs);
``--preset tiny --device cpu --modes sdpa`` smoke-tests it anywhere.
Run: ``python -m bench.gpu_throughput [--steps 10 --warmup 3 --modes sdpa,flex,flex+pack1548]``.
"""

from __future__ import annotations

import argparse
import json
import random
import time
import zlib
from collections.abc import Sequence

import torch

from showo.attention import batch_attention_mask, batch_block_mask
from showo.device import peak_tflops
from showo.losses import gather_labelled, labelled_loss
from showo.masking import mask_image_tokens
from showo.model import ShowO, ShowOConfig, phi_config
from showo.packing import pack, packed_block_mask, segment_attention, unpack
from showo.vocab import UnifiedVocab

PRESETS = {
    # Phi-1.5 (microsoft/phi-1_5 config.json) with Show-o's unified vocabulary, stage-2 rows per GPU.
    "phi-1.5": dict(
        text_size=50295,
        hidden=2048,
        layers=24,
        heads=32,
        ffn=8192,
        codebook=8192,
        grid=16,
        text=128,
        rows={"t2i": 10, "lm": 4, "mmu": 10},
    ),
    "tiny": dict(
        text_size=1000,
        hidden=64,
        layers=2,
        heads=2,
        ffn=256,
        codebook=64,
        grid=4,
        text=16,
        rows={"t2i": 2, "lm": 1, "mmu": 2},
    ),
}
N_SPECIAL = 10  # [PAD] and the nine task / delimiter tokens


class WordTokenizer:
    """A stand-in text tokenizer: one id per whitespace word, hashed into the text vocabulary."""

    def __init__(self, text_size: int) -> None:
        self.text_size = text_size

    def __call__(self, texts: Sequence[str], add_special_tokens: bool = False) -> dict:
        return {"input_ids": [[zlib.crc32(w.encode()) % self.text_size for w in t.split()] for t in texts]}


def official_vocab(text_size: int, codebook: int) -> UnifiedVocab:
    """The official id arithmetic for a text tokenizer of ``text_size`` ids (bos = eos = last text id)."""
    pad = text_size
    fields = ["soi_id", "eoi_id", "sov_id", "eov_id", "t2i_id", "mmu_id", "t2v_id", "v2v_id", "lvg_id"]
    data = dict(zip(fields, range(pad + 1, pad + N_SPECIAL)))
    offset = pad + N_SPECIAL
    size = offset + codebook + 1
    data |= dict(text_size=pad, pad_id=pad, bos_id=pad - 1, eos_id=pad - 1, image_offset=offset)
    data |= dict(codebook_size=codebook, mask_id=size - 1, size=size)
    return UnifiedVocab.from_dict(data)


def words(rng: random.Random, n: int) -> str:
    return " ".join(f"w{rng.randrange(100000)}" for _ in range(n))


def caption(rng: random.Random) -> str:
    return words(rng, rng.randint(8, 30) if rng.random() < 0.5 else rng.randint(40, 120))


def build_model(p: dict, attn: str, device: torch.device) -> ShowO:
    vocab = official_vocab(p["text_size"], p["codebook"])
    llm_cfg = dict(
        vocab_size=vocab.size,
        hidden_size=p["hidden"],
        num_hidden_layers=p["layers"],
        num_attention_heads=p["heads"],
        intermediate_size=p["ffn"],
        partial_rotary_factor=0.5,
        max_position_embeddings=2048,
    )
    from transformers import PhiForCausalLM

    llm = PhiForCausalLM(phi_config(llm_cfg, attn))
    config = ShowOConfig(p["codebook"], p["grid"] ** 2, p["text"], llm.config.to_dict())
    return ShowO(llm, vocab, config, WordTokenizer(p["text_size"])).to(device).train()


def make_rows(model: ShowO, rows: dict[str, int], seed: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """One step's rows per task, MTP-masked t2i images included (CPU tensors)."""
    rng, gen = random.Random(seed), torch.Generator().manual_seed(seed)
    pr, vocab = model.prompter(cond_dropout_prob=0.1), model.vocab
    n, m = model.config.num_image_tokens, model.config.max_text_len
    codes = torch.randint(0, vocab.codebook_size, (max(rows["t2i"], rows["mmu"]), n), generator=gen)
    img = vocab.codes_to_ids(codes)
    ids, labels = pr.t2i(
        [caption(rng) for _ in range(rows["t2i"])], img[: rows["t2i"]], img[: rows["t2i"]], gen
    )
    masked, targets = mask_image_tokens(ids[:, m + 2 : -1], vocab.mask_id, "cosine", gen)
    ids[:, m + 2 : -1], labels[:, m + 2 : -1] = masked, targets
    lm = pr.lm([words(rng, 2 * pr.seq_len) for _ in range(rows["lm"])])
    mmu = pr.mmu(img[: rows["mmu"]], [caption(rng) for _ in range(rows["mmu"])])
    return {"t2i": (ids, labels), "lm": lm, "mmu": mmu}


def parse_mode(mode: str) -> tuple[str, int]:
    """``sdpa`` / ``flex``, optionally ``+pack<budget>`` (sequence packing into rows of that many tokens)."""
    kernel, _, pack_spec = mode.partition("+pack")
    if kernel not in ("sdpa", "flex") or (pack_spec and not pack_spec.isdigit()):
        raise SystemExit(f"gpu_throughput: error: unknown mode {mode!r} (sdpa, flex, sdpa+pack580, ...)")
    return kernel, int(pack_spec or 0)


def step(model: ShowO, rows: dict, mode: str, device: torch.device, optimizer: torch.optim.Optimizer) -> int:
    """One optimizer step; returns the positions the transformer processed (pads included)."""
    kernel, budget = parse_mode(mode)
    parts = [(task, r[0]) for task, r in rows.items()]
    labels = torch.cat([r[1] for r in rows.values()]).to(device, non_blocking=True)
    ids = torch.cat([p[1] for p in parts])
    half = torch.bfloat16 if device.type == "cuda" else torch.float32
    packed, mask, extra = None, None, {}
    if budget:
        packed = pack(ids, model.vocab.pad_id, budget)
        rules = [task for task, p in parts for _ in range(len(p))]
        packed = packed.to(device)
        ids = ids.to(device)
        if kernel == "flex":
            mask = packed_block_mask(packed, ids, rules, model.vocab, compiled=True)
        else:  # what training runs on an sdpa model: per-sample attention in length buckets
            extra = {"segments": segment_attention(packed, ids, rules, model.vocab, half)}
        inputs, positions = packed.ids, packed.position_ids
    else:
        parts = [(task, p.to(device, non_blocking=True)) for task, p in parts]
        if kernel == "flex":
            mask = batch_block_mask(parts, model.vocab, compiled=True)
        else:
            mask = batch_attention_mask(parts, model.vocab, half)
        inputs, positions = torch.cat([p for _, p in parts]), None
    layout = {task: len(p) for task, p in parts}
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        decoder = model.llm.get_decoder()
        hidden = decoder(
            input_ids=inputs, attention_mask=mask, position_ids=positions, **extra
        ).last_hidden_state
        if packed is not None:
            hidden = unpack(hidden, packed)
        picked = gather_labelled(
            hidden, labels, layout, model.llm.lm_head, max_text_len=model.config.max_text_len
        )
        loss = labelled_loss(picked, {"t2i": 1.0, "lm": 0.1, "mmu": 1.0})["loss"]
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return inputs.numel()


def peak_flops(device: torch.device) -> tuple[str, float | None]:
    if device.type != "cuda":
        return "cpu", None
    peak = peak_tflops(device, "bf16-mixed")
    return torch.cuda.get_device_name(device), peak * 1e12 if peak else None


def measure(
    p: dict, attn: str, device: torch.device, steps: int, warmup: int, kernel_options: dict | None = None
) -> dict:
    torch.manual_seed(0)
    model = build_model(p, parse_mode(attn)[0], device)
    if kernel_options and model.uses_flex:
        model.set_flex_kernel_options(kernel_options)
    params = sum(t.numel() for t in model.parameters())
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")
    batches = [make_rows(model, p["rows"], seed) for seed in range(steps + warmup)]
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for b in batches[:warmup]:
        step(model, b, attn, device, optimizer)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    processed = sum(step(model, b, attn, device, optimizer) for b in batches[warmup:])
    sync()
    seconds = (time.perf_counter() - start) / steps
    ids = [torch.cat([r[0] for r in b.values()]) for b in batches[warmup:]]
    tokens = processed / steps
    nonpad = sum(int((i != model.vocab.pad_id).sum()) for i in ids) / steps
    name, peak = peak_flops(device)
    achieved = 6.0 * params * tokens / seconds
    out = {
        "step_s": round(seconds, 4),
        "tokens_per_s": round(tokens / seconds, 1),
        "nonpad_tokens_per_s": round(nonpad / seconds, 1),
        "pad_fraction": round(1 - nonpad / tokens, 4),
        "model_tflops_per_s": round(achieved / 1e12, 2),
        "mfu": round(achieved / peak, 4) if peak else None,
        "peak_memory_gib": round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
        if device.type == "cuda"
        else None,
    }
    del model, optimizer
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return {"params": params, "device_name": name, "seq_len": ids[0].shape[1], **out}


def skipped(mask) -> float:
    """Share of the mask's 128x128 blocks that FlexAttention never visits."""
    full = mask.full_kv_num_blocks.sum().item() if mask.full_kv_num_blocks is not None else 0
    visited = mask.kv_num_blocks.sum().item() + full
    return round(1 - visited / (mask.kv_num_blocks.numel() * mask.kv_num_blocks.shape[-1]), 4)


def block_mask_stats(p: dict, device: torch.device, budgets: list[int]) -> dict:
    """Blocks the omni block mask skips for a stage-2 batch (unpacked and packed into each budget), and
    the seconds one unpacked block mask takes to build (eager vmap and compiled)."""
    model = build_model(p, "sdpa", torch.device("cpu"))
    parts = [(t, r[0].to(device)) for t, r in make_rows(model, p["rows"], 0).items()]
    out = {"block_skipped_fraction": skipped(batch_block_mask(parts, model.vocab))}
    ids = torch.cat([x for _, x in parts])
    rules = [task for task, x in parts for _ in range(len(x))]
    for budget in budgets:
        packed = pack(ids, model.vocab.pad_id, budget)
        out[f"block_skipped_fraction_pack{budget}"] = skipped(
            packed_block_mask(packed, ids, rules, model.vocab)
        )
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for compiled in (False, True):
        batch_block_mask(parts, model.vocab, compiled)
        sync()
        start = time.perf_counter()
        batch_block_mask(parts, model.vocab, compiled)
        sync()
        out[f"build_s_{'compiled' if compiled else 'eager'}"] = round(time.perf_counter() - start, 4)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="phi-1.5")
    parser.add_argument("--device", default="cuda")
    parser.add_argument(
        "--modes",
        default="sdpa,flex,sdpa+pack580,sdpa+pack8192,flex+pack580,flex+pack1548",
        help="comma-separated kernels sdpa / flex, each optionally +pack<budget> (sequence packing)",
    )
    parser.add_argument(
        "--flex-kernel-options",
        type=json.loads,
        default=None,
        help='flex modes\' Triton settings as JSON, e.g. \'{"BLOCK_M": 64, "BLOCK_N": 64, "num_stages": 2}\'',
    )
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print(json.dumps({"bench": "gpu_throughput", "skipped": "no CUDA device"}))
        return
    p = PRESETS[args.preset]
    result: dict = {
        "bench": "gpu_throughput",
        "preset": args.preset,
        "rows": p["rows"],
        "torch": torch.__version__,
        "flex_kernel_options": args.flex_kernel_options,
    }
    for mode in args.modes.split(","):
        try:
            result[mode] = measure(p, mode, device, args.steps, args.warmup, args.flex_kernel_options)
        except Exception as err:  # noqa: BLE001  (one mode failing on a lent device must not lose the others)
            result[mode] = {"error": f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"}
            if device.type == "cuda":
                torch.cuda.empty_cache()
    if any(mode.startswith("flex") for mode in args.modes.split(",")):
        budgets = sorted({parse_mode(m)[1] for m in args.modes.split(",")} - {0})
        result["block_mask"] = block_mask_stats(p, device, budgets)
    for mode in args.modes.split(","):
        if mode != "sdpa" and "tokens_per_s" in result.get("sdpa", {}) and "tokens_per_s" in result[mode]:
            result[f"{mode}_over_sdpa_nonpad_tokens_per_s"] = round(
                result[mode]["nonpad_tokens_per_s"] / result["sdpa"]["nonpad_tokens_per_s"], 3
            )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
