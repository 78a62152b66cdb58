"""`showo recipe plan`: parameter count against a closed-form count of Phi with QK-norm, tokens, FLOPs, memory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from showo.cli import main

from .conftest import REPO

TINY_PHI = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4}
# microsoft/phi-1_5 config.json (the architecture fields)
PHI_15 = {"hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 24, "num_attention_heads": 32}


def _phi_dir(root: Path, arch: dict, with_tokenizer: bool) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    config = {"model_type": "phi", "vocab_size": 51200, "partial_rotary_factor": 0.5, **arch}
    (root / "config.json").write_text(json.dumps(config))
    if with_tokenizer:
        from tokenizers import Tokenizer, models, pre_tokenizers
        from transformers import PreTrainedTokenizerFast

        vocab = {w: i for i, w in enumerate(["<|endoftext|>", *[f"w{i}" for i in range(99)]])}
        tok = Tokenizer(models.WordLevel(vocab, unk_token="<|endoftext|>"))
        tok.pre_tokenizer = pre_tokenizers.Whitespace()
        PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>").save_pretrained(root)
    return root


def _phi_parameters(h: int, inter: int, layers: int, heads: int, vocab: int) -> int:
    """Closed form: embeddings, per layer q/k/v/dense + biases, per-head QK LayerNorm, MLP, norms, lm_head+bias."""
    head_dim = h // heads
    per_layer = 4 * (h * h + h) + 2 * (2 * head_dim) + (h * inter + inter) + (inter * h + h) + 2 * h
    return vocab * h + layers * per_layer + 2 * h + vocab * h + vocab


def _plan(capsys, *argv: str) -> dict:
    assert main(["recipe", "plan", *argv, "--json"]) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


@pytest.fixture(scope="module")
def tiny_llm(tmp_path_factory) -> Path:
    return _phi_dir(tmp_path_factory.mktemp("plan") / "tiny-llm", TINY_PHI, with_tokenizer=True)


@pytest.fixture
def tiny_recipe(valid_recipe, write_recipe, tiny_llm) -> Path:
    valid_recipe["model"]["llm"] = str(tiny_llm)
    valid_recipe["model"]["codebook_size"] = 512
    return write_recipe(valid_recipe)


def test_parameters_tokens_flops_under_zero2(tiny_recipe, capsys):
    plan = _plan(
        capsys,
        str(tiny_recipe),
        "trainer.strategy.name=deepspeed",
        "trainer.devices=4",
        "trainer.num_nodes=2",
        "optim.accumulate_grad_batches=3",
    )
    vocab = 100 + 10 + 512 + 1  # text tokens + [PAD] and task tokens + codes + mask
    params = _phi_parameters(32, 64, 2, 4, vocab)
    assert plan["vocab_size"] == vocab and plan["text_vocab_size"] == 100
    assert plan["parameters"] == params
    seq = 32 + 256 + 3
    assert plan["seq_len"] == seq
    assert plan["tokens_per_step"] == (8 + 4) * seq * 8 * 3
    assert plan["flops_per_step"] == pytest.approx(6 * params * plan["tokens_per_step"])
    # ZeRO-2 without offload: 16-bit weights replicated, 18 bytes/param of grads + fp32 states split over 8 GPUs
    assert plan["gpu_bytes_per_gpu"] == 2 * params + int(18 * params / 8)
    assert plan["zero_stage"] == 2 and "estimate_zero2" in plan["memory_source"]


def test_zero3_offload_keeps_only_the_largest_layer_on_gpu(tiny_recipe, capsys):
    plan = _plan(
        capsys,
        str(tiny_recipe),
        "trainer.strategy={name: deepspeed, zero_stage: 3, offload_optimizer: true, offload_params: true}",
        "trainer.devices=2",
    )
    vocab = 100 + 10 + 512 + 1
    assert plan["largest_layer_parameters"] == vocab * 32 + vocab  # lm_head weight + bias
    assert plan["gpu_bytes_per_gpu"] == 4 * (vocab * 32 + vocab)


def test_replicated_strategies(tiny_recipe, capsys):
    plan = _plan(capsys, str(tiny_recipe))
    assert plan["strategy"] == "auto" and plan["zero_stage"] is None and plan["gpus"] == 1
    assert plan["gpu_bytes_per_gpu"] == 16 * plan["parameters"]


def test_human_readable_output(tiny_recipe, capsys):
    assert main(["recipe", "plan", str(tiny_recipe)]) == 0
    out = capsys.readouterr().out
    for label in ("parameters", "tokens / step", "FLOPs / step", "GPU per GPU", "activations"):
        assert label in out


def test_paper_scale_stage1(tmp_path, capsys, monkeypatch):
    phi = _phi_dir(tmp_path / "phi-1_5", PHI_15, with_tokenizer=False)
    monkeypatch.chdir(REPO)
    plan = _plan(capsys, "recipes/showo/stage1.yaml", f"model.llm={phi}", "--text-vocab-size", "50295")
    assert plan["vocab_size"] == 58498  # the official unified vocabulary
    assert plan["parameters"] == _phi_parameters(2048, 8192, 24, 32, 58498)
    assert plan["tokens_per_step"] == 1392 * 387  # 29 rows x 48 GPUs, L = 387 (docs/official-differences.md)
    assert plan["gpus"] == 48


def test_plan_errors_exit_2(tiny_recipe, tmp_path, capsys):
    assert main(["recipe", "plan", str(tiny_recipe), "trainer.devices=auto"]) == 2
    assert "trainer.devices=N" in capsys.readouterr().err
    assert main(["recipe", "plan", str(tiny_recipe), f"model.llm={tmp_path / 'none'}"]) == 2
    err = capsys.readouterr().err
    assert "tokenizer directory not found" in err and len(err.strip().splitlines()) == 1
    assert main(["recipe", "plan", str(tiny_recipe), f"model.llm={tmp_path}", "--text-vocab-size", "5"]) == 2
    assert "config.json" in capsys.readouterr().err


def test_llm_config_gives_the_same_count_as_a_config_file(tiny_recipe, tiny_llm, capsys):
    from_dir = _plan(capsys, str(tiny_recipe))
    arch = "{" + ", ".join(f"{k}: {v}" for k, v in {**TINY_PHI, "partial_rotary_factor": 0.5}.items()) + "}"
    from_config = _plan(
        capsys,
        str(tiny_recipe),
        "model.llm=null",
        f"model.llm_config={arch}",
        f"model.text_tokenizer={tiny_llm}",
    )
    assert from_config["parameters"] == from_dir["parameters"]


def test_each_zero_stage_holds_no_more_than_the_one_before(tiny_recipe, capsys):
    per_gpu = [
        _plan(
            capsys,
            str(tiny_recipe),
            "trainer.strategy.name=deepspeed",
            f"trainer.strategy.zero_stage={stage}",
            "trainer.devices=8",
        )["gpu_bytes_per_gpu"]
        for stage in (0, 1, 2, 3)
    ]
    assert per_gpu == sorted(per_gpu, reverse=True) and per_gpu[0] > per_gpu[3]
