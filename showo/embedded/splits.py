"""The two splits every embedded source knows; held-out data is reserved for evaluation."""

from __future__ import annotations

from showo.errors import ShowoError

SPLITS: tuple[str, ...] = ("train", "heldout")


def check_split(split: str) -> str:
    """Return `split` unchanged, or raise `ShowoError` naming the valid splits."""
    if split not in SPLITS:
        raise ShowoError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    return split
