"""AdamW groups and the LR schedule against independent references (transformers' schedule, module types)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from transformers import get_cosine_schedule_with_warmup

from showo.training.optim import build_optimizer, lr_factor, param_groups


def test_no_decay_groups_cover_biases_norms_qk_norm_and_embeddings(tiny_showo):
    decay, plain = param_groups(tiny_showo, 0.01)
    names = {id(p): n for n, p in tiny_showo.named_parameters()}
    decay_names = {names[id(p)] for p in decay["params"]}
    plain_names = {names[id(p)] for p in plain["params"]}
    assert decay["weight_decay"] == 0.01 and plain["weight_decay"] == 0.0
    assert decay_names | plain_names == set(names.values()) and not decay_names & plain_names
    for name in plain_names:
        assert name.endswith("bias") or "layernorm" in name or "embed_tokens" in name, name
    # every kind the official name list missed is here: QK-norm, block and final LayerNorms, embeddings
    for part in (
        "q_layernorm.weight",
        "k_layernorm.weight",
        "input_layernorm.weight",
        "final_layernorm.weight",
        "embed_tokens.weight",
        "q_proj.bias",
        "lm_head.bias",
    ):
        assert any(n.endswith(part) for n in plain_names), part
    for part in ("q_proj.weight", "dense.weight", "fc1.weight", "fc2.weight", "lm_head.weight"):
        assert any(n.endswith(part) for n in decay_names), part


@pytest.mark.parametrize("warmup,total", [(0, 10), (5, 50), (20, 21)])
def test_schedule_matches_transformers_cosine_with_warmup(warmup, total):
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    ref = get_cosine_schedule_with_warmup(opt, warmup, total)
    for step in range(total + 1):
        assert lr_factor(step, warmup, total) == pytest.approx(ref.lr_lambdas[0](step), abs=1e-12)


def test_min_lr_ratio_floor_and_scheduler_steps():
    assert lr_factor(100, 10, 100, 0.1) == pytest.approx(0.1)
    assert lr_factor(55, 10, 100, 0.1) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    model = torch.nn.Linear(2, 2)
    cfg = SimpleNamespace(
        lr=2e-3, betas=[0.9, 0.95], eps=1e-8, weight_decay=0.1, warmup_steps=2, max_steps=6, min_lr_ratio=0.25
    )
    optimizer, scheduler = build_optimizer(model, cfg)
    lrs = []
    for _ in range(7):
        lrs.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    assert lrs[0] == 0.0 and lrs[2] == pytest.approx(2e-3) and lrs[6] == pytest.approx(2e-3 * 0.25)
    assert optimizer.param_groups[0]["betas"] == (0.9, 0.95)
