"""Training fixtures: hand-written shards that follow the shard contract (docs/interfaces.md), a tiny image
tokenizer, and recipes built from dicts; all built once per session."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import webdataset as wds
import yaml
from omegaconf import OmegaConf

from showo.recipe import load_recipe
from tests.fixtures.model import TINY_CODEBOOK, TINY_GRID, TINY_MAX_TEXT_LEN
from tests.fixtures.tokenizer import build_tiny_image_tokenizer

REPO = Path(__file__).resolve().parents[2]
N_TOKENS = TINY_GRID[0] * TINY_GRID[1]
COLORS = ["red", "green", "blue", "yellow"]
SHAPES = ["circle", "square", "triangle", "star"]
DIGITS = ["zero", "one", "two", "three"]
BASELINE_STEPS = 10


def scene_codes(index: int) -> np.ndarray:
    """Learnable fake codes: a fixed pattern per scene, so the loss can fall within a few steps."""
    rng = np.random.default_rng(index % 8)
    return rng.integers(0, TINY_CODEBOOK, size=N_TOKENS).astype(np.uint16)


def write_shards(out: Path, name: str, samples: list[dict], per_shard: int) -> list[str]:
    out.mkdir(parents=True, exist_ok=True)
    with wds.ShardWriter(str(out / f"{name}-%06d.tar"), maxcount=per_shard, verbose=0) as sink:
        for sample in samples:
            sink.write(sample)
    return sorted(str(p) for p in out.glob(f"{name}-*.tar"))


def _meta(task: str, **extra) -> dict:
    return {
        "task": task,
        "source": "handwritten",
        "orig_size": [64, 64],
        "crop": {},
        "sha1": "0" * 40,
        "grid": list(TINY_GRID),
        **extra,
    }


@pytest.fixture(scope="session")
def shards(tmp_path_factory) -> dict[str, str]:
    """Glob per shard set: image_text (t2i/mmu; also at 32x32 and 4x4 codes), class (c2i), lm, instruct, mixed; 4 shards of 6."""
    root = tmp_path_factory.mktemp("shards")
    sets: dict[str, list[dict]] = {"image_text": [], "class": [], "lm": [], "instruct": [], "mixed": []}
    for i in range(24):
        color, shape = COLORS[i % 4], SHAPES[(i // 4) % 4]
        caption = f"a {color} {shape}"
        captions = {"original": caption, "recaptions": []}
        key = f"s{i:05d}"
        sets["image_text"].append(
            {
                "__key__": key,
                "codes.npy": scene_codes(i),
                "txt": caption,
                "captions.json": captions,
                "json": _meta("image_text"),
            }
        )
        sets["class"].append(
            {
                "__key__": key,
                "codes.npy": scene_codes(i % 4),
                "txt": DIGITS[i % 4],
                "captions.json": {"original": DIGITS[i % 4], "recaptions": []},
                "json": _meta("class", label=i % 4, class_name=DIGITS[i % 4]),
            }
        )
        sets["lm"].append(
            {
                "__key__": key,
                "txt": f"the {shape} is {color}. " * 3,
                "captions.json": {"original": None, "recaptions": []},
                "json": _meta("lm"),
            }
        )
        conv = [
            {"from": "human", "value": f"<image>\nWhat color is the {shape}?"},
            {"from": "gpt", "value": f"The {shape} is {color}."},
        ]
        sets["instruct"].append(
            {
                "__key__": key,
                "codes.npy": scene_codes(i),
                "txt": caption,
                "captions.json": captions,
                "json": _meta("instruct", conversations=conv),
            }
        )
        frames = np.stack([scene_codes(i), scene_codes(i + 1)])
        sets["mixed"].append(
            {
                "__key__": key,
                "codes.npy": frames,
                "txt": caption,
                "captions.json": captions,
                "json": _meta("mixed", frame_captions=[caption, f"the {shape} moves"]),
            }
        )
    sets["image_text_32"] = [
        {**s, "codes.npy": np.tile(s["codes.npy"], 4), "json": _meta("image_text", grid=[32, 32])}
        for s in sets["image_text"]
    ]
    sets["image_text_4"] = [  # a 4x4 grid (16 px under the tiny tokenizer): fast token-by-token sampling
        {**s, "codes.npy": s["codes.npy"][:16], "json": _meta("image_text", grid=[4, 4])}
        for s in sets["image_text"]
    ]
    for name, samples in sets.items():
        write_shards(root / name, name, samples, per_shard=6)
    return {name: str(root / name / "*.tar") for name in sets}


@pytest.fixture(scope="session")
def image_tokenizer_dir(tmp_path_factory) -> Path:
    """A tiny random MAGVIT-v2-style tokenizer: 64 px -> 16x16 codes, 2^8 = 256 codes (TINY_CODEBOOK)."""
    return build_tiny_image_tokenizer(z_channels=8).save_pretrained(
        tmp_path_factory.mktemp("image_tokenizer")
    )


def recipe_dict(tmp: Path, llm_dir: Path, tokenizer_dir: Path, shards: dict[str, str], **changes) -> dict:
    """A tiny fp32 CPU recipe over the hand-written shards; `changes` are dotted keys -> values."""
    streams = {
        "t2i": {"shards": [shards["image_text"]], "batch_size": 2, "loss_coeff": 1.0},
        "lm": {"shards": [shards["lm"]], "batch_size": 1, "loss_coeff": 0.1},
        "mmu": {"shards": [shards["image_text"]], "batch_size": 2, "loss_coeff": 1.0},
    }
    recipe = {
        "kind": "showo",
        "run": {"name": "tiny", "output_dir": str(tmp / "runs"), "seed": 7},
        "model": {
            "llm": str(llm_dir),
            "image_tokenizer": str(tokenizer_dir),
            "codebook_size": TINY_CODEBOOK,
            "image_grid": list(TINY_GRID),
            "max_text_len": TINY_MAX_TEXT_LEN,
        },
        "data": {"resolution": 64, "num_workers": 0, "shuffle_buffer": 8, "streams": streams},
        "optim": {"lr": 3e-3, "warmup_steps": 2, "max_steps": 8, "min_lr_ratio": 0.1},
        "trainer": {
            "accelerator": "cpu",
            "devices": 1,
            "precision": "32-true",
            "strategy": {"name": "auto"},
            "log_every": 1,
            "sample_every": 0,
            "checkpoint_every": 4,
            "keep_checkpoints": -1,
            "peak_tflops": 0.05,  # a CPU has no table entry: the override makes the MFU scalar appear
        },
    }
    for key, value in changes.items():
        node = recipe
        *parents, last = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return recipe


def write_recipe(path: Path, recipe: dict) -> Path:
    path.write_text(yaml.safe_dump(recipe))
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_train(recipe: Path, *overrides: str, nproc: int = 1, timeout: int = 300, check: bool = True):
    """`showo train` in a subprocess (torchrun for several processes, so Lightning does not relaunch pytest)."""
    env = {
        **os.environ,
        "DS_ACCELERATOR": "cpu",
        "TOKENIZERS_PARALLELISM": "false",
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": str(REPO),
    }
    if nproc > 1:
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            f"--nproc_per_node={nproc}",
            f"--master_port={free_port()}",
            "-m",
            "showo.cli",
            "train",
            str(recipe),
            *overrides,
        ]
    else:
        cmd = [sys.executable, "-m", "showo.cli", "train", str(recipe), *overrides]
    proc = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"train failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return proc


def kill_after_first_checkpoint(recipe: Path, run_dir: Path) -> int:
    """Start `showo train` in a process, SIGKILL it somewhere after its first checkpoint (possibly mid-save);
    returns the step of the last complete checkpoint."""
    from showo.training.checkpoint import list_checkpoints

    env = {**os.environ, "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "showo.cli", "train", str(recipe)],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 240
    while not list_checkpoints(run_dir) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(random.uniform(0.0, 0.4))
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return int(list_checkpoints(run_dir)[-1].name[5:13])


def scalars(run_dir: Path, tag: str) -> dict[int, float]:
    """step -> value of a TensorBoard scalar (the last write wins, as after a resume)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out: dict[int, float] = {}
    for events in sorted((run_dir / "tensorboard").rglob("events.out.tfevents.*"), key=os.path.getmtime):
        acc = EventAccumulator(str(events), size_guidance={"scalars": 0, "images": 0})
        acc.Reload()
        if tag in acc.Tags()["scalars"]:
            out.update({e.step: e.value for e in acc.Scalars(tag)})
    return out


@pytest.fixture(scope="session")
def baseline(tmp_path_factory, tiny_llm_dir, image_tokenizer_dir, shards):
    """An uninterrupted run: BASELINE_STEPS steps, checkpoints every 3, previews every 5."""
    tmp = tmp_path_factory.mktemp("baseline")
    recipe = recipe_dict(
        tmp,
        tiny_llm_dir,
        image_tokenizer_dir,
        shards,
        **{
            "optim.max_steps": BASELINE_STEPS,
            "trainer.checkpoint_every": 3,
            "trainer.sample_every": 5,
            "trainer.sample": {
                "prompts": ["a red circle", "a blue star"],
                "steps": 3,
                "seed": 1,
                "caption_images": 2,
            },
        },
    )
    path = write_recipe(tmp / "recipe.yaml", recipe)
    proc = run_train(path)
    return {
        "recipe": path,
        "dict": recipe,
        "run_dir": tmp / "runs" / "tiny",
        "stdout": proc.stdout + proc.stderr,
        "loaded": OmegaConf.to_container(OmegaConf.structured(load_recipe(path))),
    }
