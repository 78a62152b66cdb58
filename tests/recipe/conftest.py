"""Recipe-test helpers: a valid recipe as a plain dict, written to YAML with one change at a time."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]

VALID: dict = {
    "kind": "showo",
    "run": {"name": "t", "output_dir": "runs"},
    "model": {"llm": "demo_out/tiny-llm", "image_tokenizer": "demo_out/tokenizer", "max_text_len": 32},
    "data": {
        "resolution": 64,
        "streams": {
            "t2i": {"shards": ["demo_out/shards/shapes-64/*.tar"], "batch_size": 8},
            "lm": {"shards": ["demo_out/shards/text/*.tar"], "batch_size": 4, "loss_coeff": 0.1},
        },
    },
    "optim": {"lr": 1.0e-3, "warmup_steps": 10, "max_steps": 100},
    "trainer": {"accelerator": "cpu", "devices": 1, "precision": "32-true", "strategy": {"name": "auto"}},
}


@pytest.fixture
def valid_recipe() -> dict:
    """A fresh deep copy of a small valid Show-o recipe."""
    return copy.deepcopy(VALID)


@pytest.fixture
def write_recipe(tmp_path: Path) -> Callable[..., Path]:
    """write_recipe(data, name="r.yaml") -> path; a str is written verbatim."""

    def write(data: dict | str, name: str = "r.yaml") -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
        return path

    return write
