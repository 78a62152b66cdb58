"""pope-mini: POPE's yes/no object-existence probe on held-out shapes images.

An "object" is a (colour, shape) pair. Every image asks about each object it holds (answer yes) and as
many objects it lacks (answer no), the absent ones chosen three ways as in POPE: `random` (uniformly),
`popular` (the objects most frequent across the question images), and `adversarial` (objects sharing a
colour or a shape with one that is present: the attribute-binding slips a model hallucinates most, the
shapes-world analogue of POPE's co-occurring objects). Answers are read as POPE reads them: a reply
containing "no" or "not" is a no, anything else a yes.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from showo.embedded.shapes import COLOR_NAMES, SHAPES, Scene, noun_phrase, render, sample_scene, scene_rng
from showo.errors import ShowoError

SPLITS: tuple[str, ...] = ("random", "popular", "adversarial")
N_IMAGES = 100
# Held-out scene indices used by pope-mini (caption-mini uses a later range).
FIRST_INDEX = 0
SEED = 3


@dataclass(frozen=True)
class PopeQuestion:
    image_index: int
    question: str
    answer: str
    color: str
    shape: str


def scene(index: int) -> Scene:
    """Held-out scene `index`."""
    return sample_scene(scene_rng("heldout", index))


def image(index: int, size: int = 64) -> Image.Image:
    return render(scene(index), size)


def _question(color: str, shape: str) -> str:
    return f"Is there {noun_phrase(color, shape)} in the image?"


def questions(split: str = "random", n_images: int = N_IMAGES) -> list[PopeQuestion]:
    """The pinned questions of one split over held-out scenes FIRST_INDEX .. FIRST_INDEX+n_images-1."""
    if split not in SPLITS:
        raise ShowoError(f"unknown pope-mini split {split!r}; expected one of {', '.join(SPLITS)}")
    if n_images < 1:
        raise ShowoError(f"pope-mini needs at least one image, got {n_images}")
    indices = range(FIRST_INDEX, FIRST_INDEX + n_images)
    scenes = {i: scene(i) for i in indices}
    frequency = Counter(k for s in scenes.values() for k in s.counts())
    everything = [(c, s) for c in COLOR_NAMES for s in SHAPES]
    popularity = sorted(everything, key=lambda k: (-frequency[k], everything.index(k)))
    rng = np.random.default_rng([SEED, SPLITS.index(split)])
    out: list[PopeQuestion] = []
    for i in indices:
        present = sorted(scenes[i].counts())
        absent = [k for k in everything if k not in present]
        if split == "random":
            negatives = [absent[j] for j in rng.permutation(len(absent))[: len(present)]]
        elif split == "popular":
            negatives = [k for k in popularity if k not in present][: len(present)]
        else:
            near = [k for k in absent if any(k[0] == p[0] or k[1] == p[1] for p in present)]
            negatives = [near[j] for j in rng.permutation(len(near))[: len(present)]]
        pairs = [(k, "yes") for k in present] + [(k, "no") for k in negatives]
        for j in rng.permutation(len(pairs)):
            (color, shape), answer = pairs[j]
            out.append(PopeQuestion(i, _question(color, shape), answer, color, shape))
    return out


def parse_answer(text: str) -> str:
    """POPE's reading of a free-form reply: "no" if it contains the word no or not, else "yes"."""
    words = re.findall(r"[a-z]+", text.lower())
    return "no" if "no" in words or "not" in words else "yes"


def score(answers: Sequence[str], questions: Sequence[PopeQuestion]) -> dict:
    """Accuracy, precision, recall and F1 (yes is the positive class) and the yes-ratio, as POPE reports."""
    if len(answers) != len(questions):
        raise ShowoError(f"{len(answers)} answers but {len(questions)} questions")
    if not answers:
        raise ShowoError("no answers to score")
    predicted = np.array([parse_answer(a) == "yes" for a in answers])
    truth = np.array([q.answer == "yes" for q in questions])
    tp = int((predicted & truth).sum())
    fp = int((predicted & ~truth).sum())
    fn = int((~predicted & truth).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "accuracy": float((predicted == truth).mean()),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "yes_ratio": float(predicted.mean()),
        "n": len(answers),
    }
