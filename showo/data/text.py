"""Caption policies applied at load time (official `training/data.py`): first sentence, boilerplate prefixes."""

from __future__ import annotations

import random

CAPTION_PREFIXES: tuple[str, ...] = (
    "The image features ",
    "The image depicts ",
    "The image shows ",
    "The image displays ",
    "The image captures ",
    "The image presents ",
    "This image features ",
    "This image depicts ",
    "This image shows ",
    "This image displays ",
    "In this image, ",
    "In the image, ",
    "This is ",
)
"""Openers recaptioners put before the content; they teach the generator nothing."""


def first_sentence(text: str) -> str:
    """The text up to and including the first full stop (all of it when there is none)."""
    head, dot, _ = text.partition(".")
    return (head + dot).strip() if head.strip() else text.strip()


def strip_prefix(text: str) -> str:
    """Drop one known opener and re-capitalise what remains."""
    for prefix in CAPTION_PREFIXES:
        if text.startswith(prefix):
            rest = text[len(prefix) :]
            return rest[:1].upper() + rest[1:]
    return text


def caption_for_generation(text: str, rng: random.Random, first_sentence_prob: float, strip: bool) -> str:
    """The t2i prompt of one sample under a stream's caption policy (rng drawn once per sample)."""
    if rng.random() < first_sentence_prob:
        text = first_sentence(text)
    return strip_prefix(text) if strip else text
