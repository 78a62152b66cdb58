"""`fit(recipe)`: one Show-o training stage under a Lightning Trainer (what `showo train` runs).

Run directory `<output_dir>/<name>`: `recipe.yaml` (resolved), `checkpoints/step-XXXXXXXX.ckpt`,
`tensorboard/` (scalars, preview grids, captions, hyper-parameters).
"""

from __future__ import annotations

import os
from pathlib import Path

import lightning.pytorch as pl
from lightning.pytorch.callbacks import TQDMProgressBar
from lightning.pytorch.loggers import TensorBoardLogger

from showo.data.datamodule import ShowoDataModule
from showo.data.shards import expand_shards
from showo.device import peak_tflops, resolve_device
from showo.errors import ShowoError
from showo.recipe import save_recipe
from showo.recipe.schema import ShowoRecipe
from showo.training.checkpoint import AtomicCheckpoint, find_resume
from showo.training.init import build_model
from showo.training.module import ShowoModule
from showo.training.monitor import StepTimer
from showo.training.strategy import build_strategy, resolve_accelerator, resolve_precision

TENSORBOARD_DIR = "tensorboard"


def micro_batch_rows(recipe: ShowoRecipe) -> int:
    return sum(s.batch_size for s in recipe.data.streams.values() if s is not None)


def fit(recipe: ShowoRecipe) -> Path:
    """Train one stage; resumes per `resume`, starts from `init_from` otherwise. Returns the run directory."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    run_dir = Path(recipe.run_dir)
    resume = find_resume(recipe.resume, run_dir)
    accelerator = resolve_accelerator(recipe.trainer.accelerator)
    if accelerator == "cpu" and recipe.model.attn_implementation == "flex":
        raise ShowoError(
            "model.attn_implementation=flex cannot train on the CPU: torch has no FlexAttention backward "
            "there (use sdpa; flex serves CPU inference)"
        )
    pl.seed_everything(recipe.run.seed, workers=True, verbose=False)
    for task, stream in recipe.data.streams.items():  # fail on a missing shard before loading any weights
        if stream is not None:
            expand_shards(stream.shards, f"data.streams.{task}.shards")
    model = build_model(recipe, load_init=resume is None)  # a resumed checkpoint carries the weights
    max_frames = recipe.data.streams["mixed"].max_frames if recipe.data.streams.get("mixed") else 1
    datamodule = ShowoDataModule(
        recipe.data,
        model.prompter(recipe.objective.cond_dropout_prob, max_frames),
        recipe.run.seed,
        segment_steps=recipe.trainer.checkpoint_every,
        objective=recipe.objective,
        accumulate_grad_batches=recipe.optim.accumulate_grad_batches,
    )
    module = ShowoModule(model, recipe)
    logger = TensorBoardLogger(
        save_dir=str(run_dir), name=TENSORBOARD_DIR, version="", default_hp_metric=False
    )
    callbacks: list[pl.Callback] = [
        AtomicCheckpoint(run_dir, recipe.trainer.checkpoint_every, recipe.trainer.keep_checkpoints),
        StepTimer(
            model.vocab.pad_id,
            recipe.trainer.log_every,
            flops_per_token=6.0 * sum(p.numel() for p in model.parameters()),
            peak_tflops=recipe.trainer.peak_tflops
            or peak_tflops(
                resolve_device("auto" if accelerator == "cuda" else "cpu"), recipe.trainer.precision
            ),
        ),
        TQDMProgressBar(refresh_rate=1),
    ]
    if recipe.trainer.sample_every > 0:
        from showo.training.previews import Previews

        callbacks.append(Previews(recipe, datamodule))
    trainer = pl.Trainer(
        accelerator=accelerator,
        devices=recipe.trainer.devices,
        num_nodes=recipe.trainer.num_nodes,
        strategy=build_strategy(recipe.trainer.strategy, accelerator, micro_batch_rows(recipe)),
        precision=resolve_precision(recipe.trainer.precision, accelerator),
        max_steps=recipe.optim.max_steps,
        accumulate_grad_batches=recipe.optim.accumulate_grad_batches,
        gradient_clip_val=recipe.optim.grad_clip,
        log_every_n_steps=recipe.trainer.log_every,
        logger=logger,
        callbacks=callbacks,
        enable_checkpointing=False,
        default_root_dir=str(run_dir),
        use_distributed_sampler=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
    )
    if trainer.is_global_zero:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_recipe(recipe, run_dir / "recipe.yaml")
        start = f"resuming from {resume}" if resume else f"starting from {recipe.init_from or 'scratch'}"
        print(
            f"showo: {start}; TensorBoard logs in {logger.log_dir} (view: showo tensorboard {run_dir})",
            flush=True,
        )
    # the checkpoint passed verification (find_resume); Lightning reads a file weights-only, and a DeepSpeed
    # directory only after every states file passed a weights-only load
    trainer.fit(module, datamodule=datamodule, ckpt_path=resume, weights_only=True)
    return run_dir
