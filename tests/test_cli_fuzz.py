"""Every `showo` and `showo-data` command over a table of bad arguments and bad files.

Each case must end the way a user's mistake ends: exit status 2, one line on stderr starting with
`showo: error:` / `showo-data: error:`, no traceback, and within a generous time bound (it must not hang or
allocate for minutes). Progress-bar lines (carriage returns) written before the failure are not counted.
Cases run in-process (fast) under an alarm and an address-space cap, so a regression that hangs or
allocates without bound fails its case instead of stalling the session or exhausting a shared machine.
"""

from __future__ import annotations

import contextlib
import json
import re
import resource
import shutil
import signal
import sys
import time
from pathlib import Path

import pytest
import yaml
from PIL import Image

import data_engine.cli
import showo.cli
from tests.data_engine.corpus import bomb_png, png_bytes
from tests.recipe.conftest import VALID

SECONDS_PER_CASE = 45.0
"""Generous: the slowest cases load a tiny model on a loaded 2-core machine."""
MEMORY_MARGIN = 4 << 30
"""Address space a case may add to the test process (the tiny models need a few hundred MiB)."""
GARBAGE = bytes(range(256)) * 3 + b"\x00\xff\xfe garbage"


def _copy(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def _truncate(path: Path) -> None:
    with path.open("r+b") as handle:
        handle.truncate(path.stat().st_size // 2)


def _write_json(path: Path, data) -> None:
    path.write_text(json.dumps(data))


def _model_dirs(root: Path, model: Path) -> dict[str, Path]:
    """The exported tiny model and broken copies of it."""
    dirs = {"model": model}
    for name, change in {
        "cfg_list": lambda d: (d / "config.json").write_text("[1, 2, 3]"),
        "cfg_garbage": lambda d: (d / "config.json").write_bytes(GARBAGE),
        "cfg_nonutf8": lambda d: (d / "config.json").write_bytes(b'{"model_type": "showo", "x": "\xff\xfe"}'),
        "cfg_empty": lambda d: (d / "config.json").write_bytes(b""),
        "cfg_missing": lambda d: (d / "config.json").unlink(),
        "cfg_is_dir": lambda d: ((d / "config.json").unlink(), (d / "config.json").mkdir()),
        "cfg_wrong_types": lambda d: _edit_config(d, lambda c: c.update(codebook_size="many", llm=[1])),
        "cfg_negative": lambda d: _edit_config(d, lambda c: c.update(num_image_tokens=-16)),
        "cfg_nan": lambda d: (d / "config.json").write_text(
            (d / "config.json").read_text().replace('"layer_norm_eps": 1e-05', '"layer_norm_eps": NaN')
        ),
        "weights_truncated": lambda d: _truncate(d / "model.safetensors"),
        "weights_garbage": lambda d: (d / "model.safetensors").write_bytes(GARBAGE),
        "weights_empty": lambda d: (d / "model.safetensors").write_bytes(b""),
        "weights_missing": lambda d: (d / "model.safetensors").unlink(),
        "tokenizer_garbage": lambda d: (d / "tokenizer.json").write_bytes(GARBAGE),
        "vocab_list": lambda d: (d / "vocab.json").write_text("[]"),
        "imgtok_cfg_list": lambda d: (d / "image_tokenizer" / "config.json").write_text("[]"),
        "imgtok_truncated": lambda d: _truncate(d / "image_tokenizer" / "model.safetensors"),
        "imgtok_traversal": lambda d: (
            shutil.rmtree(d / "image_tokenizer"),
            _edit_config(d, lambda c: c.update(image_tokenizer="../../../../etc")),
        ),
    }.items():
        change(_copy(model, root / name))
        dirs[name] = root / name
    return dirs


def _edit_config(directory: Path, change) -> None:
    config = json.loads((directory / "config.json").read_text())
    change(config)
    _write_json(directory / "config.json", config)


def _absurd_models(root: Path, model: Path) -> dict[str, Path]:
    """Sizes no machine can hold: each must be refused before anything is allocated."""

    def llm(config: dict) -> None:
        config["llm"].update(hidden_size=2**20, num_hidden_layers=10**4, vocab_size=10**9)
        config["llm"]["intermediate_size"] = 2**24

    changes = {
        "absurd_llm": llm,
        "absurd_image": lambda c: c.update(num_image_tokens=10**12, codebook_size=10**12),
        "absurd_text": lambda c: c.update(max_text_len=10**12),
        "absurd_heads": lambda c: c["llm"].update(num_attention_heads=10**9, num_key_value_heads=10**9),
    }
    dirs = {}
    for name, change in changes.items():
        dirs[name] = _copy(model, root / name)
        _edit_config(dirs[name], change)
    return dirs


def _shard_dirs(root: Path, shards: Path) -> dict[str, Path]:
    """Broken copies of a real shard directory."""
    dirs = {}
    for name, change in {
        "shards_tar_truncated": lambda d: _truncate(sorted(d.glob("*.tar"))[0]),
        "shards_tar_garbage": lambda d: sorted(d.glob("*.tar"))[0].write_bytes(GARBAGE),
        "shards_manifest_garbage": lambda d: (d / "manifest.jsonl").write_bytes(GARBAGE),
        "shards_manifest_list": lambda d: (d / "manifest.jsonl").write_text("[1, 2]\n[3]\n"),
        "shards_manifest_missing": lambda d: (d / "manifest.jsonl").unlink(),
        "shards_manifest_traversal": lambda d: (d / "manifest.jsonl").write_text(
            "\n".join(
                json.dumps({**json.loads(line), "shard": "../../../etc/passwd"})
                for line in (d / "manifest.jsonl").read_text().splitlines()
            )
            + "\n"
        ),
    }.items():
        change(_copy(shards, root / name))
        dirs[name] = root / name
    return dirs


def _images(root: Path) -> dict[str, Path]:
    images = root / "images"
    images.mkdir()
    Image.new("RGB", (24, 16), (200, 30, 30)).save(images / "image.png")
    Image.new("L", (10, 10), 255).save(images / "small_mask.png")
    side = int((Image.MAX_IMAGE_PIXELS * 1.5) ** 0.5)
    files = {
        "bomb.png": bomb_png(),
        "warning_bomb.png": bomb_png(side, side),
        "garbage.png": GARBAGE,
        "empty.png": b"",
        "truncated.png": png_bytes(Image.effect_noise((64, 64), 40))[:200],
        "text.png": "not an image: caf\xe9".encode("latin-1"),
    }
    for name, data in files.items():
        (images / name).write_bytes(data)
    (images / "dir.png").mkdir()
    return {f"img_{path.stem}": path for path in images.iterdir()}


def _recipes(root: Path, secret: Path, model: Path, llm: Path) -> dict[str, Path]:
    recipes = root / "recipes"
    recipes.mkdir()
    valid = {
        **VALID,
        "model": {**VALID["model"], "llm": str(llm), "image_tokenizer": str(model / "image_tokenizer")},
    }
    valid["model"]["image_grid"] = [4, 4]
    valid["data"] = {
        "resolution": 16,
        "streams": {"t2i": {"shards": [str(root / "no-such-shards" / "*.tar")], "batch_size": 2}},
    }
    valid["run"] = {"name": "fuzz", "output_dir": str(root / "runs")}
    texts = {
        "list": "- a\n- b\n",
        "scalar": "just a string\n",
        "unknown_key": yaml.safe_dump({**valid, "surprise": 1}),
        "env": yaml.safe_dump({**valid, "run": {"name": "${oc.env:HOME}"}}),
        "base_secret": yaml.safe_dump({"base": str(secret), "run": {"name": "x"}}),
        "base_traversal": yaml.safe_dump({"base": "../" * 30 + "etc/hostname"}),
        "lr_nan": yaml.safe_dump({**valid, "optim": {**valid["optim"], "lr": float("nan")}}),
        "no_shards": yaml.safe_dump(valid),
        "valid": yaml.safe_dump(valid),
    }
    for name, text in texts.items():
        (recipes / f"{name}.yaml").write_text(text)
    (recipes / "garbage.yaml").write_bytes(GARBAGE)
    (recipes / "nonutf8.yaml").write_bytes(b"run:\n  name: caf\xe9\xff\n")
    (recipes / "empty.yaml").write_bytes(b"")
    return {path.stem: path for path in recipes.iterdir()}


@pytest.fixture(scope="module")
def paths(tmp_path_factory, tiny_llm_dir, shapes_shards, shards_tokenizer_dir) -> dict[str, str]:
    from showo.model import ShowO
    from tests.fixtures.tokenizer import build_tiny_image_tokenizer

    root = tmp_path_factory.mktemp("fuzz")
    model = root / "model_base"
    ShowO.build(tiny_llm_dir, None, codebook_size=64, num_image_tokens=16, max_text_len=16).save_pretrained(
        model
    )
    build_tiny_image_tokenizer(
        ch_mult=[1, 1, 1], decoder_ch_mult=[1, 1, 1], z_channels=6, resolution=16
    ).save_pretrained(model / "image_tokenizer")
    secret = root / "secret.txt"
    secret.write_text("SECRET-CONTENT: hunter2\n")
    table: dict[str, Path] = {
        "root": root,
        "missing": root / "missing",
        "dir": root / "a_directory",
        "empty": root / "empty.bin",
        "garbage": root / "garbage.bin",
        "nonutf8": root / "nonutf8.txt",
        "secret": secret,
        "shards": shapes_shards,
        "shard_tokenizer": shards_tokenizer_dir,
        "pickle": root / "evil.ckpt",
        **_absurd_models(root, model),
        **_model_dirs(root, model),
        **_shard_dirs(root, shapes_shards),
        **_images(root),
        **{f"recipe_{k}": v for k, v in _recipes(root, secret, model, tiny_llm_dir).items()},
    }
    table["dir"].mkdir()
    (table["dir"] / "empty_dir").mkdir()
    table["empty"].write_bytes(b"")
    table["garbage"].write_bytes(GARBAGE)
    table["nonutf8"].write_bytes(b"\xff\xfe\xfa not utf-8 \xe9")
    # a pickle that would create a marker file if it were ever unpickled
    marker = root / "PICKLE_RAN"
    table["marker"] = marker
    table["pickle"].write_bytes(b"cposix\nsystem\n(V" + f"touch {marker}".encode() + b"\ntR.")
    return {key: str(value) for key, value in table.items()}


def _gen(*extra: str) -> list[str]:
    return ["generate", "--ckpt", "{model}", "--prompt", "x", "--device", "cpu", *extra]


def _cap(*extra: str) -> list[str]:
    return ["caption", "--ckpt", "{model}", "--image", "{image}", "--device", "cpu", *extra]


def _inp(*extra: str) -> list[str]:
    return [
        "inpaint",
        "--ckpt",
        "{model}",
        "--image",
        "{image}",
        "--mask",
        "{image}",
        "--prompt",
        "x",
        *extra,
    ]


def _ext(*extra: str) -> list[str]:
    return [
        "extrapolate",
        "--ckpt",
        "{model}",
        "--image",
        "{image}",
        "--direction",
        "left",
        "--prompt",
        "x",
        *extra,
    ]


def _int(*extra: str) -> list[str]:
    return ["interleave", "--ckpt", "{model}", "--prompt", "x", "--out", "{root}/sequence", *extra]


def _eval(*extra: str) -> list[str]:
    return ["eval", "--ckpt", "{model}", "--suite", "digits", *extra]


def _build(*extra: str) -> list[str]:
    return ["build", "--source", "embedded:shapes", "--out", "{root}/built", "--no-progress", *extra]


SHOWO_CASES: dict[str, list[str]] = {
    # usage
    "no-command": [],
    "unknown-command": ["frobnicate"],
    "unknown-option": _gen("--no-such-option"),
    "generate-no-prompt": ["generate", "--ckpt", "{model}"],
    # numbers
    "guidance-nan": _gen("--guidance", "nan"),
    "guidance-inf": _gen("--guidance", "inf"),
    "guidance-negative": _gen("--guidance", "-1"),
    "guidance-huge": _gen("--guidance", "1e308"),
    "guidance-text": _gen("--guidance", "strong"),
    "seed-65-bits": _gen("--seed", str(2**64)),
    "seed-negative": _gen("--seed", "-1"),
    "seed-float": _gen("--seed", "1.5"),
    "seed-5000-digits": _gen("--seed", "9" * 5000),
    "n-zero": _gen("--n", "0"),
    "n-huge": _gen("--n", str(10**9)),
    "batch-size-zero": _gen("--batch-size", "0"),
    "steps-zero": _gen("--steps", "0"),
    "steps-huge": _gen("--steps", str(10**7)),
    "steps-text": _gen("--steps", "many"),
    "temperature-nan": _gen("--temperature", "nan"),
    "temperature-negative": _gen("--temperature", "-0.5"),
    "temperature-denormal": _gen("--temperature", "1e-40"),
    "sampler-unknown": _gen("--sampler", "diffusion"),
    "schedule-unknown": _gen("--schedule", "cosh"),
    "temperature-schedule-unknown": _gen("--temperature-schedule", "hot"),
    "device-unknown": _gen("--device", "banana"),
    "device-meta": _gen("--device", "meta"),
    # output paths
    "out-is-a-directory": _gen("--out", "{dir}"),
    "out-under-a-file": _gen("--out", "{garbage}/grid.png"),
    "out-disk-full": _gen("--n", "1", "--steps", "2", "--out", "/dev/full"),
    "out-unwritable-filesystem": _gen("--n", "1", "--steps", "2", "--out", "/proc/grid.png"),
    # checkpoints
    "ckpt-missing": _gen("--ckpt", "{missing}"),
    "ckpt-is-a-file": _gen("--ckpt", "{garbage}"),
    "ckpt-empty-dir": _gen("--ckpt", "{dir}"),
    "ckpt-config-list": _gen("--ckpt", "{cfg_list}"),
    "ckpt-config-garbage": _gen("--ckpt", "{cfg_garbage}"),
    "ckpt-config-non-utf8": _gen("--ckpt", "{cfg_nonutf8}"),
    "ckpt-config-empty": _gen("--ckpt", "{cfg_empty}"),
    "ckpt-config-missing": _gen("--ckpt", "{cfg_missing}"),
    "ckpt-config-is-a-dir": _gen("--ckpt", "{cfg_is_dir}"),
    "ckpt-config-wrong-types": _gen("--ckpt", "{cfg_wrong_types}"),
    "ckpt-config-negative-size": _gen("--ckpt", "{cfg_negative}"),
    "ckpt-config-nan": _gen("--ckpt", "{cfg_nan}"),
    "ckpt-config-absurd-llm": _gen("--ckpt", "{absurd_llm}"),
    "ckpt-config-absurd-image-grid": _gen("--ckpt", "{absurd_image}"),
    "ckpt-config-absurd-text-length": _gen("--ckpt", "{absurd_text}"),
    "ckpt-config-absurd-heads": _gen("--ckpt", "{absurd_heads}"),
    "ckpt-weights-truncated": _gen("--ckpt", "{weights_truncated}"),
    "ckpt-weights-garbage": _gen("--ckpt", "{weights_garbage}"),
    "ckpt-weights-empty": _gen("--ckpt", "{weights_empty}"),
    "ckpt-weights-missing": _gen("--ckpt", "{weights_missing}"),
    "ckpt-tokenizer-garbage": _gen("--ckpt", "{tokenizer_garbage}"),
    "ckpt-vocab-list": _gen("--ckpt", "{vocab_list}"),
    "image-tokenizer-config-list": _gen("--ckpt", "{imgtok_cfg_list}"),
    "image-tokenizer-truncated": _gen("--ckpt", "{imgtok_truncated}"),
    "image-tokenizer-traversal": _gen("--ckpt", "{imgtok_traversal}"),
    "image-tokenizer-missing": _gen("--image-tokenizer", "{missing}"),
    "image-tokenizer-is-a-file": _gen("--image-tokenizer", "{garbage}"),
    "image-tokenizer-pickle": _gen("--image-tokenizer", "{pickle}"),
    # images
    "caption-image-missing": _cap("--image", "{missing}"),
    "caption-image-directory": _cap("--image", "{img_dir}"),
    "caption-image-empty": _cap("--image", "{img_empty}"),
    "caption-image-garbage": _cap("--image", "{img_garbage}"),
    "caption-image-bomb": _cap("--image", "{img_bomb}"),
    "caption-image-warning-bomb": _cap("--image", "{img_warning_bomb}"),
    "caption-image-truncated": _cap("--image", "{img_truncated}"),
    "caption-image-non-utf8-text": _cap("--image", "{img_text}"),
    "caption-max-new-tokens-zero": _cap("--max-new-tokens", "0"),
    "caption-max-new-tokens-huge": _cap("--max-new-tokens", str(10**9)),
    "caption-temperature-inf": _cap("--temperature", "inf"),
    "caption-top-k-zero": _cap("--top-k", "0"),
    "caption-top-p-over-one": _cap("--top-p", "1.5"),
    "caption-top-p-nan": _cap("--top-p", "nan"),
    "inpaint-mask-bomb": _inp("--mask", "{img_bomb}"),
    "inpaint-mask-missing": _inp("--mask", "{missing}"),
    "inpaint-mask-other-size": _inp("--mask", "{img_small_mask}", "--device", "cpu"),
    "inpaint-n-zero": _inp("--n", "0"),
    "inpaint-out-directory": _inp("--out", "{dir}"),
    "extrapolate-direction": _ext("--direction", "sideways"),
    "extrapolate-offset-huge": _ext("--offset", str(10**30)),
    "extrapolate-offset-out-of-grid": _ext("--offset", "100", "--device", "cpu"),
    "extrapolate-prompt-count": _ext("--direction", "left,up,down", "--prompt", "y"),
    "extrapolate-image-garbage": _ext("--image", "{garbage}"),
    # interleave
    "interleave-frames-zero": _int("--frames", "0"),
    "interleave-frames-huge": _int("--frames", str(10**9)),
    "interleave-prompts-over-frames": _int("--prompt", "y", "--frames", "1"),
    "interleave-guidance": _int("--guidance", "2"),
    "interleave-out-is-a-file": _int("--out", "{garbage}"),
    "interleave-caption-room": _int("--frames", "64", "--device", "cpu"),
    "interleave-out-unwritable": _int(
        "--out", "/proc/sequence", "--frames", "1", "--steps", "1", "--device", "cpu"
    ),
    # eval
    "eval-unknown-suite": ["eval", "--ckpt", "{model}", "--suite", "imagenet"],
    "eval-steps-zero": _eval("--steps", "0"),
    "eval-guidance-inf": _eval("--guidance", "inf"),
    "eval-seed-negative": _eval("--seed", "-5"),
    "eval-batch-size-huge": _eval("--batch-size", str(10**12)),
    "eval-temperature-nan": _eval("--temperature", "nan"),
    "eval-prompt-template": _eval("--prompt-template", "chat"),
    "eval-out-directory": _eval("--out", "{dir}"),
    "eval-sheet-directory": _eval("--sheet", "{dir}"),
    "eval-ckpt-missing": ["eval", "--ckpt", "{missing}", "--suite", "digits"],
    "eval-ckpt-config-list": ["eval", "--ckpt", "{cfg_list}", "--suite", "digits"],
    "eval-ckpt-config-absurd": ["eval", "--ckpt", "{absurd_llm}", "--suite", "digits"],
    # export
    "export-ckpt-missing": ["export", "--ckpt", "{missing}", "--out", "{root}/exported"],
    "export-ckpt-garbage": ["export", "--ckpt", "{garbage}", "--out", "{root}/exported"],
    "export-ckpt-empty-dir": ["export", "--ckpt", "{dir}", "--out", "{root}/exported"],
    "export-ckpt-pickle": ["export", "--ckpt", "{pickle}", "--out", "{root}/exported"],
    "export-out-is-a-file": ["export", "--ckpt", "{model}", "--out", "{garbage}"],
    # tensorboard
    "tensorboard-missing": ["tensorboard", "{missing}"],
    "tensorboard-file": ["tensorboard", "{garbage}"],
    "tensorboard-port-negative": ["tensorboard", "{dir}", "--port", "-1"],
    "tensorboard-port-huge": ["tensorboard", "{dir}", "--port", "65536"],
    "tensorboard-port-text": ["tensorboard", "{dir}", "--port", "http"],
    # recipes
    "recipe-validate-missing": ["recipe", "validate", "{missing}"],
    "recipe-validate-directory": ["recipe", "validate", "{dir}"],
    "recipe-validate-list": ["recipe", "validate", "{recipe_list}"],
    "recipe-validate-scalar": ["recipe", "validate", "{recipe_scalar}"],
    "recipe-validate-garbage": ["recipe", "validate", "{recipe_garbage}"],
    "recipe-validate-non-utf8": ["recipe", "validate", "{recipe_nonutf8}"],
    "recipe-validate-empty": ["recipe", "validate", "{recipe_empty}"],
    "recipe-validate-unknown-key": ["recipe", "validate", "{recipe_unknown_key}"],
    "recipe-show-env": ["recipe", "show", "{recipe_env}"],
    "recipe-show-base-secret": ["recipe", "show", "{recipe_base_secret}"],
    "recipe-show-base-traversal": ["recipe", "show", "{recipe_base_traversal}"],
    "recipe-show-lr-nan": ["recipe", "show", "{recipe_lr_nan}"],
    "recipe-show-bad-override": ["recipe", "show", "{recipe_valid}", "optim.lr=fast"],
    "recipe-show-env-override": ["recipe", "show", "{recipe_valid}", "run.name=${{oc.env:HOME}}"],
    "recipe-show-huge-override": ["recipe", "show", "{recipe_valid}", f"optim.max_steps={10**400}"],
    "recipe-plan-vocab-zero": ["recipe", "plan", "{recipe_valid}", "--text-vocab-size", "0"],
    "recipe-plan-vocab-huge": ["recipe", "plan", "{recipe_valid}", "--text-vocab-size", str(10**40)],
    "train-missing": ["train", "{missing}"],
    "train-garbage": ["train", "{recipe_garbage}"],
    "train-env": ["train", "{recipe_env}"],
    "train-bad-override": ["train", "{recipe_valid}", "trainer.devices=-3"],
    "train-no-shards": ["train", "{recipe_no_shards}"],
}

DATA_CASES: dict[str, list[str]] = {
    "data-no-command": [],
    "data-unknown-option": ["stats", "{shards}", "--frobnicate"],
    "build-no-source": ["build", "--out", "{root}/built"],
    "build-source-without-kind": _build("--source", "{dir}"),
    "build-source-unknown-kind": _build("--source", "pictures:{dir}"),
    "build-source-missing": _build("--source", "pairs:{missing}", "--tokenizer", "{shard_tokenizer}"),
    "build-source-a-file": _build("--source", "pairs:{garbage}", "--tokenizer", "{shard_tokenizer}"),
    "build-jsonl-a-directory": _build("--source", "jsonl:{dir}", "--tokenizer", "{shard_tokenizer}"),
    "build-resolution-zero": _build("--resolution", "0"),
    "build-resolution-negative": _build("--resolution", "-64"),
    "build-resolution-nan": _build("--resolution", "nan"),
    "build-resolution-huge": _build("--resolution", str(10**9)),
    "build-shard-size-zero": _build("--shard-size", "0"),
    "build-batch-size-zero": _build("--batch-size", "0"),
    "build-workers-negative": _build("--workers", "-1"),
    "build-limit-negative": _build("--limit", "-1"),
    "build-world-size-zero": _build("--world-size", "0"),
    "build-rank-outside-world": _build("--rank", "5", "--world-size", "2"),
    "build-max-pixels-zero": _build("--max-pixels", "0"),
    "build-caption-max-tokens-huge": _build("--caption-max-tokens", str(10**12)),
    "build-dedup-unknown": _build("--dedup", "md5"),
    "build-recaptioner-unknown": _build("--recaptioner", "gpt:nowhere"),
    "build-out-is-a-file": _build("--out", "{garbage}", "--tokenizer", "{shard_tokenizer}"),
    "build-out-unwritable": _build(
        "--out", "/proc/built", "--tokenizer", "{shard_tokenizer}", "--limit", "2"
    ),
    "build-tokenizer-missing": _build("--tokenizer", "{missing}"),
    "build-tokenizer-garbage": _build("--tokenizer", "{garbage}"),
    "build-tokenizer-pickle": _build("--tokenizer", "{pickle}"),
    "build-device-unknown": _build("--device", "banana", "--tokenizer", "{shard_tokenizer}"),
    "inspect-missing": ["inspect", "{missing}", "--grid", "{root}/grid.png"],
    "inspect-a-file": ["inspect", "{garbage}", "--grid", "{root}/grid.png"],
    "inspect-empty-dir": ["inspect", "{dir}", "--grid", "{root}/grid.png"],
    "inspect-count-zero": ["inspect", "{shards}", "--grid", "{root}/grid.png", "--count", "0"],
    "inspect-count-negative": ["inspect", "{shards}", "--grid", "{root}/grid.png", "--count", "-5"],
    "inspect-grid-is-a-directory": ["inspect", "{shards}", "--grid", "{dir}"],
    "inspect-tokenizer-missing": [
        "inspect",
        "{shards}",
        "--grid",
        "{root}/g.png",
        "--tokenizer",
        "{missing}",
    ],
    "inspect-tar-garbage": ["inspect", "{shards_tar_garbage}", "--grid", "{root}/grid.png"],
    "inspect-manifest-garbage": ["inspect", "{shards_manifest_garbage}", "--grid", "{root}/grid.png"],
    "stats-missing": ["stats", "{missing}"],
    "stats-a-file": ["stats", "{garbage}"],
    "stats-empty-dir": ["stats", "{dir}"],
    "stats-tar-truncated": ["stats", "{shards_tar_truncated}", "--verify"],
    "stats-tar-garbage": ["stats", "{shards_tar_garbage}", "--verify"],
    "stats-manifest-garbage": ["stats", "{shards_manifest_garbage}"],
    "stats-manifest-list": ["stats", "{shards_manifest_list}"],
    "stats-manifest-missing": ["stats", "{shards_manifest_missing}"],
    "stats-manifest-traversal": ["stats", "{shards_manifest_traversal}", "--verify"],
}


def _fill(argv: list[str], paths: dict[str, str]) -> list[str]:
    defaults = {"image": paths["img_image"], "model": paths["model"]}
    return [arg.format(**{**defaults, **paths}) for arg in argv]


def _check(
    prog: str, code, err: str, seconds: float, paths: dict[str, str], limit: float = SECONDS_PER_CASE
) -> None:
    lines = [line for line in err.split("\n") if line and "\r" not in line]  # progress bars redraw with \r
    assert "Traceback" not in err, err
    assert code == 2, f"exit status {code!r}; stderr: {err}"
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: error: "), err
    assert "SECRET-CONTENT" not in err and "hunter2" not in err
    assert not Path(paths["marker"]).exists(), "a pickle ran"
    assert seconds < limit, f"took {seconds:.0f} s"


@contextlib.contextmanager
def _memory_cap():
    """Lower this process's address-space limit to what it maps now plus MEMORY_MARGIN, for one case."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    mapped = int(re.search(r"VmSize:\s+(\d+) kB", Path("/proc/self/status").read_text()).group(1)) * 1024
    cap = min([mapped + MEMORY_MARGIN, *(limit for limit in (soft, hard) if limit != resource.RLIM_INFINITY)])
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


class _Hung(BaseException):
    """Raised by the alarm: a BaseException, so no `except Exception` in the code under test swallows it."""


def _hung(signum, frame) -> None:
    raise _Hung(f"no answer within {SECONDS_PER_CASE} s")


def _run_in_process(main, argv: list[str], capsys) -> tuple[object, str, float]:
    """Run a CLI `main`; an alarm turns a hang into a failure instead of a stuck test session."""
    previous = signal.signal(signal.SIGALRM, _hung)
    signal.setitimer(signal.ITIMER_REAL, SECONDS_PER_CASE)
    start = time.monotonic()
    try:
        with _memory_cap():
            code = main(argv)
    except SystemExit as exit_:
        code = exit_.code
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    seconds = time.monotonic() - start
    return code, capsys.readouterr().err, seconds


pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the alarm and memory cap are Linux ones")


@pytest.mark.parametrize("argv", SHOWO_CASES.values(), ids=SHOWO_CASES.keys())
def test_showo_bad_input_is_one_line(argv, paths, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # default --out names land here, never in the repository
    code, err, seconds = _run_in_process(showo.cli.main, _fill(argv, paths), capsys)
    _check("showo", code, err, seconds, paths)


@pytest.mark.parametrize("argv", DATA_CASES.values(), ids=DATA_CASES.keys())
def test_showo_data_bad_input_is_one_line(argv, paths, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    code, err, seconds = _run_in_process(data_engine.cli.main, _fill(argv, paths), capsys)
    _check("showo-data", code, err, seconds, paths)


def test_the_table_is_large_enough():
    assert len(SHOWO_CASES) + len(DATA_CASES) >= 60
    assert {argv[0] for argv in SHOWO_CASES.values() if argv} == {*showo.cli.COMMANDS, "frobnicate"}
    assert {argv[0] for argv in DATA_CASES.values() if argv} == {"build", "inspect", "stats"}
