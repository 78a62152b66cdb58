"""Shared fixtures: tiny tokenizers, models and shards are built once per test session."""

import os

os.environ.setdefault("DS_ACCELERATOR", "cpu")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

pytest_plugins = [
    "tests.fixtures.tokenizer",
    "tests.fixtures.model",
    "tests.fixtures.shards",
    "tests.fixtures.vae",
]
