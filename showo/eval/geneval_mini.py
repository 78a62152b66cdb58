"""geneval-mini: GenEval's six compositional checks, pinned over the shapes world.

Each prompt comes with GenEval-style metadata (`include` / `exclude` requirements on shape, count,
colour and relative position) and is judged on the shapes detector's output exactly as GenEval judges
Mask2Former detections: at least `count` objects of the shape, of the colour if one is required, in the
required position relative to an earlier requirement, and fewer than `count` of each `exclude`.
Prompts follow the training-caption grammar of `showo.embedded.shapes` (which always names a colour), and
only the attribute a category is about is checked. The set is drawn once from a fixed seed and pinned
by `DIGEST` (a test fails if it ever changes).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image

from showo.embedded.shapes import COLOR_NAMES, NUMBER_WORDS, PLURALS, RELATION_PHRASES, SHAPES, noun_phrase
from showo.errors import ShowoError
from showo.eval.shapes_detector import Detection, ShapesDetector, default_detector

TAGS: tuple[str, ...] = ("single_object", "two_object", "counting", "colors", "position", "color_attr")
PER_TAG = 16
SEED = 20240822
# GenEval's relative-position rule: the centre offset, shrunk per axis by this fraction of the two
# objects' summed box sizes, must point mostly (component > 0.5 of the offset) in the named direction.
POSITION_THRESHOLD = 0.1
DIGEST = "99d8109f69c7"


@dataclass(frozen=True)
class Requirement:
    """At least `count` objects of `shape` (of `color` if given), lying `relation` ("left", "right",
    "above", "below") of some object matched by requirement number `relative_to`."""

    shape: str
    count: int = 1
    color: str | None = None
    relation: str | None = None
    relative_to: int | None = None


@dataclass(frozen=True)
class PromptSpec:
    tag: str
    prompt: str
    include: tuple[Requirement, ...]
    exclude: tuple[Requirement, ...] = ()

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> PromptSpec:
        return cls(
            data["tag"],
            data["prompt"],
            tuple(Requirement(**r) for r in data["include"]),
            tuple(Requirement(**r) for r in data.get("exclude", ())),
        )


def _pick(rng: np.random.Generator, items: Sequence) -> object:
    return items[int(rng.integers(len(items)))]


def _draw(tag: str, rng: np.random.Generator) -> PromptSpec:
    c1, c2 = (COLOR_NAMES[i] for i in rng.permutation(len(COLOR_NAMES))[:2])
    s1, s2 = (SHAPES[i] for i in rng.permutation(len(SHAPES))[:2])
    rel = str(_pick(rng, tuple(RELATION_PHRASES)))
    pair = f"{noun_phrase(c1, s1)} {RELATION_PHRASES[rel]} {noun_phrase(c2, s2)}"
    if tag == "single_object":
        return PromptSpec(tag, noun_phrase(c1, s1), (Requirement(s1),))
    if tag == "colors":
        return PromptSpec(tag, noun_phrase(c1, s1), (Requirement(s1, color=c1),))
    if tag == "counting":
        n = int(rng.integers(2, 4))
        prompt = f"{NUMBER_WORDS[n]} {c1} {PLURALS[s1]}"
        return PromptSpec(tag, prompt, (Requirement(s1, count=n),), (Requirement(s1, count=n + 1),))
    if tag == "two_object":
        return PromptSpec(tag, pair, (Requirement(s1), Requirement(s2)))
    if tag == "position":
        return PromptSpec(tag, pair, (Requirement(s2), Requirement(s1, relation=rel, relative_to=0)))
    return PromptSpec(tag, pair, (Requirement(s1, color=c1), Requirement(s2, color=c2)))


def prompt_specs(per_tag: int = PER_TAG) -> list[PromptSpec]:
    """The pinned prompts: the first `per_tag` of each category (at most `PER_TAG`), tag by tag."""
    if not 1 <= per_tag <= PER_TAG:
        raise ShowoError(f"geneval-mini has 1..{PER_TAG} prompts per category, got {per_tag}")
    rng = np.random.default_rng(SEED)
    out: list[PromptSpec] = []
    for tag in TAGS:
        seen: set[str] = set()
        specs: list[PromptSpec] = []
        while len(specs) < PER_TAG:
            spec = _draw(tag, rng)
            if spec.prompt not in seen:
                seen.add(spec.prompt)
                specs.append(spec)
        out.extend(specs[:per_tag])
    return out


def digest(specs: Sequence[PromptSpec]) -> str:
    """A short hash of a prompt set, recorded with every score."""
    text = json.dumps([s.to_dict() for s in specs], sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def relations(a: Detection, b: Detection) -> set[str]:
    """Every relation ("left", "right", "above", "below") `a` holds to `b` under GenEval's rule."""
    offset = np.array([a.x - b.x, a.y - b.y])
    length = float(np.linalg.norm(offset))
    dims = np.array([a.width + b.width, a.height + b.height])
    revised = np.maximum(np.abs(offset) - POSITION_THRESHOLD * dims, 0.0) * np.sign(offset)
    if length == 0.0 or np.all(np.abs(revised) < 1e-3):
        return set()
    dx, dy = revised / length
    found = set()
    if dx < -0.5:
        found.add("left")
    if dx > 0.5:
        found.add("right")
    if dy < -0.5:
        found.add("above")
    if dy > 0.5:
        found.add("below")
    return found


def check(spec: PromptSpec, detections: Sequence[Detection]) -> tuple[bool, str]:
    """(correct, reason) for one image, following GenEval's include / exclude logic."""
    matched: list[list[Detection]] = []
    for req in spec.include:
        found = [d for d in detections if d.shape == req.shape]
        if len(found) < req.count:
            return False, f"expected {req.shape}>={req.count}, found {len(found)}"
        if req.color is not None:
            found = [d for d in found if d.color == req.color]
            if len(found) < req.count:
                return False, f"expected {req.color} {req.shape}>={req.count}, found {len(found)}"
        if req.relation is not None:
            others = matched[req.relative_to]
            found = [d for d in found if any(req.relation in relations(d, o) for o in others)]
            if len(found) < req.count:
                return False, f"expected {req.shape} {req.relation} of {spec.include[req.relative_to].shape}"
        matched.append(found)
    for req in spec.exclude:
        found = [d for d in detections if d.shape == req.shape]
        if len(found) >= req.count:
            return False, f"expected {req.shape}<{req.count}, found {len(found)}"
    return True, "correct"


def score(
    images: Sequence[Image.Image], specs: Sequence[PromptSpec], detector: ShapesDetector | None = None
) -> dict:
    """Score generated images (one spec per image; repeat a spec for several samples of its prompt).

    Returns GenEval's summary: per-category accuracy, `overall` (the mean over categories present),
    counts, the prompt-set digest and a per-image record with the reason for each failure.
    """
    if len(images) != len(specs):
        raise ShowoError(f"{len(images)} images but {len(specs)} prompt specs")
    if not images:
        raise ShowoError("no images to score")
    detector = detector or default_detector()
    per_image = []
    for image, spec in zip(images, specs):
        correct, reason = check(spec, detector.detect(image))
        per_image.append({"tag": spec.tag, "prompt": spec.prompt, "correct": correct, "reason": reason})
    tags = {t: [r["correct"] for r in per_image if r["tag"] == t] for t in TAGS}
    accuracy = {t: float(np.mean(v)) for t, v in tags.items() if v}
    return {
        "overall": float(np.mean(list(accuracy.values()))),
        "tags": accuracy,
        "counts": {t: len(v) for t, v in tags.items() if v},
        "prompt_digest": digest(list(dict.fromkeys(specs))),
        "images": per_image,
    }
