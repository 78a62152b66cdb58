"""AdamW with weight decay on weight matrices only, and linear warmup then cosine decay to `min_lr_ratio`.

Decay groups are chosen by module type, not by parameter name: the official name list ("layer_norm.weight",
"embeddings.weight") matches nothing in Phi, so there every LayerNorm, QK-norm and embedding was decayed
(docs/official-differences.md#optimizer). Here biases, all LayerNorms (QK-norm included) and
embeddings get no decay; Linear weights (lm_head included) do.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

NO_DECAY_MODULES: tuple[type[nn.Module], ...] = (nn.LayerNorm, nn.Embedding, nn.GroupNorm, nn.RMSNorm)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Two AdamW groups: decayed matrices, and everything else (biases, norms, embeddings)."""
    no_decay: set[int] = set()
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if isinstance(module, NO_DECAY_MODULES) or name.endswith("bias") or param.ndim < 2:
                no_decay.add(id(param))
    decay_params, plain_params = [], []
    for param in model.parameters():
        if param.requires_grad:
            (plain_params if id(param) in no_decay else decay_params).append(param)
    return [
        {"params": decay_params, "weight_decay": weight_decay},
        {"params": plain_params, "weight_decay": 0.0},
    ]


def lr_factor(step: int, warmup_steps: int, max_steps: int, min_lr_ratio: float = 0.0) -> float:
    """Multiplier of the peak lr at optimizer step `step`: 0 -> 1 linearly, then half a cosine to the floor."""
    if step < warmup_steps:
        return step / max(1, warmup_steps)
    progress = min(1.0, (step - warmup_steps) / max(1, max_steps - warmup_steps))
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_optimizer(
    model: nn.Module, optim: Any, cpu_offload: bool = False
) -> tuple[torch.optim.Optimizer, LambdaLR]:
    """AdamW and its schedule: torch's (DeepSpeed accepts it; its fused_adam would need a JIT build), or
    DeepSpeed's CPU Adam in AdamW mode when ZeRO-Offload keeps the optimizer states on the CPU."""
    groups = param_groups(model, optim.weight_decay)
    if cpu_offload:
        from deepspeed.ops.adam import DeepSpeedCPUAdam

        optimizer = DeepSpeedCPUAdam(
            groups, lr=optim.lr, betas=tuple(optim.betas), eps=optim.eps, adamw_mode=True
        )
    else:
        optimizer = torch.optim.AdamW(groups, lr=optim.lr, betas=tuple(optim.betas), eps=optim.eps)
    scheduler = LambdaLR(
        optimizer,
        lambda step: lr_factor(step, optim.warmup_steps, optim.max_steps, optim.min_lr_ratio),
    )
    return optimizer, scheduler
