"""`showo recipe plan`: model size, tokens and FLOPs per step, and per-GPU memory for model states.

The parameter count comes from the real model class (transformers' `PhiForCausalLM` with QK-norm and
the unified vocabulary) built on the meta device, so no weights are allocated or read. Memory for model
states under ZeRO-2/3 comes from DeepSpeed's own estimators; activations come on top.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from showo.errors import ShowoError
from showo.recipe.schema import ShowoRecipe
from showo.safeio import loads_json

NUM_SPECIAL_TOKENS = 10
"""[PAD] plus the nine task and delimiter tokens added after the text vocabulary (official order)."""

GIB = 1024**3


@dataclass
class Plan:
    """What one optimizer step of a recipe costs."""

    parameters: int
    largest_layer_parameters: int
    vocab_size: int
    text_vocab_size: int
    seq_len: int
    rows_per_gpu: int
    gpus: int
    accumulate_grad_batches: int
    tokens_per_gpu_micro_batch: int
    tokens_per_step: int
    flops_per_step: float
    strategy: str
    zero_stage: int | None
    gpu_bytes_per_gpu: int
    cpu_bytes_per_node: int
    memory_source: str

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    def to_text(self) -> str:
        zero = f" ZeRO-{self.zero_stage}" if self.zero_stage is not None else ""
        rows = [
            ("parameters", f"{self.parameters:,} (unified vocabulary {self.vocab_size:,})"),
            ("sequence length", f"{self.seq_len} tokens per row"),
            (
                "tokens / step",
                f"{self.tokens_per_step:,} ({self.rows_per_gpu} rows x {self.seq_len} x {self.gpus} GPUs"
                f" x {self.accumulate_grad_batches} accumulation)",
            ),
            (
                "FLOPs / step",
                f"{self.flops_per_step:.3e} (6 x parameters x tokens; attention scores not counted)",
            ),
            ("model states", f"{self.strategy}{zero} over {self.gpus} GPU(s), {self.memory_source}"),
            ("  GPU per GPU", f"{self.gpu_bytes_per_gpu / GIB:.2f} GiB"),
            ("  CPU per node", f"{self.cpu_bytes_per_node / GIB:.2f} GiB"),
            ("note", "activations, communication buffers and the CUDA context come on top"),
        ]
        return "\n".join(f"{name:<16} {value}" for name, value in rows)


def plan_recipe(recipe: ShowoRecipe, text_vocab_size: int | None = None) -> Plan:
    """Size one optimizer step of `recipe`; `text_vocab_size` skips reading the text tokenizer."""
    devices = recipe.trainer.devices
    if not isinstance(devices, int):
        raise ShowoError(
            f"trainer.devices is {devices!r}: pass trainer.devices=N so the plan knows the GPU count"
        )
    n_text = text_vocab_size if text_vocab_size is not None else _text_vocab_size(recipe)
    vocab_size = n_text + NUM_SPECIAL_TOKENS + recipe.model.codebook_size + 1
    params, largest = _count_parameters(recipe, vocab_size)
    gpus = devices * recipe.trainer.num_nodes
    rows = sum(s.batch_size for s in recipe.data.streams.values())
    seq_len = recipe.model.seq_len
    accumulate = recipe.optim.accumulate_grad_batches
    tokens = rows * seq_len * gpus * accumulate
    gpu_bytes, cpu_bytes, source = _model_state_memory(recipe, params, largest, devices)
    strategy = recipe.trainer.strategy
    return Plan(
        parameters=params,
        largest_layer_parameters=largest,
        vocab_size=vocab_size,
        text_vocab_size=n_text,
        seq_len=seq_len,
        rows_per_gpu=rows,
        gpus=gpus,
        accumulate_grad_batches=accumulate,
        tokens_per_gpu_micro_batch=rows * seq_len,
        tokens_per_step=tokens,
        flops_per_step=6.0 * params * tokens,
        strategy=strategy.name,
        zero_stage=strategy.zero_stage if strategy.name == "deepspeed" else None,
        gpu_bytes_per_gpu=gpu_bytes,
        cpu_bytes_per_node=cpu_bytes,
        memory_source=source,
    )


def _text_vocab_size(recipe: ShowoRecipe) -> int:
    path = recipe.model.text_tokenizer or recipe.model.llm
    if path is None or not Path(path).is_dir():
        raise ShowoError(
            f"text tokenizer directory not found: {path} (or pass --text-vocab-size, 50295 for Phi-1.5)"
        )
    from transformers import AutoTokenizer

    try:
        return len(AutoTokenizer.from_pretrained(path, trust_remote_code=False))
    except (OSError, ValueError) as err:
        raise ShowoError(f"cannot load the text tokenizer from {path}: {str(err).splitlines()[0]}") from None


def _phi_config(recipe: ShowoRecipe):
    from transformers import PhiConfig

    if recipe.model.llm_config is not None:
        return PhiConfig(**recipe.model.llm_config)
    config_file = Path(recipe.model.llm) / "config.json"
    if not config_file.is_file():
        raise ShowoError(f"model.llm: {config_file} not found (the plan needs the LLM's config.json)")
    try:
        data = loads_json(config_file.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ShowoError(f"cannot read {config_file}: {err}") from None
    if data.get("model_type") != "phi":
        raise ShowoError(f"{config_file}: model_type is {data.get('model_type')!r}, expected 'phi'")
    return PhiConfig.from_dict(data)


def _count_parameters(recipe: ShowoRecipe, vocab_size: int) -> tuple[int, int]:
    """(total, largest single module's own) parameter counts of the Show-o LLM, built on the meta device."""
    import torch
    from transformers import PhiForCausalLM

    config = _phi_config(recipe)
    config.vocab_size = vocab_size
    config.qk_layernorm = True
    with torch.device("meta"):
        model = PhiForCausalLM(config)
    total = sum(p.numel() for p in model.parameters())
    largest = max(sum(p.numel() for p in m.parameters(recurse=False)) for m in model.modules())
    return total, largest


def _model_state_memory(recipe: ShowoRecipe, params: int, largest: int, devices: int) -> tuple[int, int, str]:
    """(GPU bytes per GPU, CPU bytes per node, where the numbers come from) for weights, grads, AdamW."""
    strategy = recipe.trainer.strategy
    nodes = recipe.trainer.num_nodes
    gpus = devices * nodes
    # the estimators are pure arithmetic: no accelerator is needed, so spare the detection warning
    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    if strategy.name == "deepspeed" and strategy.zero_stage == 2:
        from deepspeed.runtime.zero.stage_1_and_2 import estimate_zero2_model_states_mem_needs

        cpu, gpu = estimate_zero2_model_states_mem_needs(
            params, num_gpus_per_node=devices, num_nodes=nodes, cpu_offload=strategy.offload_optimizer
        )
        return gpu, cpu, "DeepSpeed estimate_zero2_model_states_mem_needs"
    if strategy.name == "deepspeed" and strategy.zero_stage == 3:
        from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs

        cpu, gpu, _ = estimate_zero3_model_states_mem_needs(
            params,
            largest,
            num_gpus_per_node=devices,
            num_nodes=nodes,
            cpu_offload=strategy.offload_optimizer,
            cpu_offload_params=strategy.offload_params,
        )
        return gpu, cpu, "DeepSpeed estimate_zero3_model_states_mem_needs"
    if strategy.name == "deepspeed" and strategy.zero_stage == 1:
        # DeepSpeed ships no stage-1 estimator: ZeRO paper P_os with its estimator's 16 bytes of fp32 state.
        if strategy.offload_optimizer:
            return 4 * params, 16 * params * devices, "ZeRO paper formula (stage 1, optimizer offloaded)"
        return 4 * params + 16 * params // gpus, 0, "ZeRO paper formula (stage 1: 4 + 16/GPUs bytes/param)"
    if strategy.name == "deepspeed":
        return 20 * params, 0, "ZeRO paper formula (stage 0: 16-bit weights and grads + 16 bytes fp32 state)"
    per_param = 8 if recipe.trainer.precision in ("bf16-true", "16-true") else 16
    return per_param * params, 0, f"replicated weights, grads and AdamW states ({per_param} bytes/param)"
