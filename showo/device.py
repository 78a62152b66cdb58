"""Which torch device a command runs on; one rule for the data engine, inference and evaluation."""

from __future__ import annotations

import os

import torch

from showo.errors import ShowoError


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
