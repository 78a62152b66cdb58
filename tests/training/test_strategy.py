"""Recipe strategy keys -> Lightning strategies and the DeepSpeed config they carry."""

from __future__ import annotations

import pytest
from lightning.pytorch.strategies import DDPStrategy, DeepSpeedStrategy

from showo.errors import ShowoError
from showo.recipe.schema import StrategyConfig
from showo.training.strategy import CPUDeepSpeedStrategy, build_strategy, resolve_accelerator


def test_deepspeed_keys_reach_the_zero_config():
    cfg = StrategyConfig(
        name="deepspeed",
        zero_stage=3,
        offload_optimizer=True,
        offload_params=True,
        allgather_bucket_size=123,
        reduce_bucket_size=456,
    )
    gpu = build_strategy(cfg, "cuda", micro_batch_size=29)
    assert type(gpu) is DeepSpeedStrategy
    zero = gpu.config["zero_optimization"]
    assert zero["stage"] == 3 and zero["offload_optimizer"]["device"] == "cpu"
    assert zero["offload_param"]["device"] == "cpu"
    assert zero["allgather_bucket_size"] == 123 and zero["reduce_bucket_size"] == 456
    assert gpu.config["train_micro_batch_size_per_gpu"] == 29
    cpu = build_strategy(StrategyConfig(name="deepspeed", zero_stage=2), "cpu")
    assert isinstance(cpu, CPUDeepSpeedStrategy) and cpu._process_group_backend == "gloo"
    assert (
        cpu.config["zero_optimization"]["stage"] == 2
        and "offload_optimizer" not in cpu.config["zero_optimization"]
    )


def test_other_strategies_and_accelerators():
    ddp = build_strategy(StrategyConfig(name="ddp"), "cpu")
    assert isinstance(ddp, DDPStrategy) and ddp._process_group_backend == "gloo"
    assert build_strategy(StrategyConfig(name="auto"), "cpu") == "auto"
    assert resolve_accelerator("cpu") == "cpu"
    with pytest.raises(ShowoError, match="accelerator"):
        resolve_accelerator("tpu")
