"""Image-tokenizer encode throughput on one accelerator: the official-size MAGVIT-v2 at 256 px (16x16 codes).

What the data engine's encoder costs per image when it runs on a GPU: ``ImageTokenizer.encode`` of the
95M-parameter official architecture (random weights: throughput does not depend on them) at batch sizes
1, 32 and 128, in fp32 and under bf16 autocast, with pinned host memory and non-blocking copies (the host
to device copy is inside the timing). Also the share of codes that agree between the CPU and the GPU
(fp32) on 8 images: LFQ takes the sign of each channel, so only values within rounding of 0 can flip.
Without CUDA it prints a skip line (``make bench`` runs on CPUs).
Run: ``python -m bench.gpu_tokenizer [--repeats 5]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from showo.tokenizer import ImageTokenizer, TokenizerConfig


def images_per_s(model: ImageTokenizer, host: torch.Tensor, repeats: int, bf16: bool) -> float:
    device = next(model.parameters()).device

    def run() -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
            model.encode(host.to(device, non_blocking=True)).cpu()

    run()
    times = []
    for _ in range(repeats):
        torch.cuda.synchronize()
        start = time.perf_counter()
        run()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return host.shape[0] / statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print(json.dumps({"bench": "gpu_tokenizer", "skipped": "no CUDA device"}))
        return
    torch.manual_seed(0)
    cpu_model = ImageTokenizer(TokenizerConfig()).eval()
    model = ImageTokenizer(TokenizerConfig()).eval()
    model.load_state_dict(cpu_model.state_dict())
    model = model.cuda()
    result: dict = {
        "bench": "gpu_tokenizer",
        "device_name": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "params": sum(p.numel() for p in model.parameters()),
    }
    for batch in (1, 32, 128):
        host = (torch.rand(batch, 3, 256, 256) * 2 - 1).pin_memory()
        for bf16 in (False, True):
            key = f"b{batch}_{'bf16' if bf16 else 'fp32'}_images_per_s"
            result[key] = round(images_per_s(model, host, args.repeats, bf16), 1)
    x = torch.rand(8, 3, 256, 256) * 2 - 1
    with torch.inference_mode():
        on_cpu = cpu_model.encode(x)
        on_gpu = model.encode(x.cuda()).cpu()
    result["cpu_gpu_code_agreement"] = round(float((on_cpu == on_gpu).float().mean()), 6)
    result["peak_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
