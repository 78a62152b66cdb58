"""Which torch device a command runs on; one rule for the data engine, inference and evaluation."""

from __future__ import annotations

import os

import torch

from showo.errors import ShowoError

# Dense (no sparsity) bf16/fp16 tensor-core peaks from the vendors' data sheets, in TFLOP/s, matched as
# substrings of `torch.cuda.get_device_name` in this order (the PCIe H100 before the SXM one).
PEAK_TFLOPS: tuple[tuple[str, float], ...] = (
    ("H200", 989.0),
    ("H100 PCIe", 756.0),
    ("H100", 989.0),
    ("A100", 312.0),
    ("L40S", 362.0),
    ("L4", 121.0),
    ("V100", 125.0),
)
HALF_PRECISIONS = ("bf16-mixed", "bf16-true", "16-mixed", "16-true")


def resolve_device(name: str | None = None) -> torch.device:
    """None or `auto`: this process's GPU (torchrun's LOCAL_RANK-th) when CUDA is available, else the CPU."""
    if name in (None, "", "auto"):
        if not torch.cuda.is_available():
            return torch.device("cpu")
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)) % torch.cuda.device_count())
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise ShowoError(f"unknown device {name!r}: {err}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ShowoError(f"device {name!r} requested but CUDA is not available")
    return device


def peak_tflops(device: torch.device, precision: str) -> float | None:
    """The device's dense half-precision peak (None: a CPU, an unknown GPU, or fp32 training)."""
    if device.type != "cuda" or precision not in HALF_PRECISIONS:
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in PEAK_TFLOPS if key in name), None)
