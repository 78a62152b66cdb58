"""caption-mini: how many of a held-out image's true attributes its generated caption states.

Attributes per image: each colour present, each shape present, each object as a colour-shape pair, each
count of two or more ("two red circles"), and for two distinct objects their relation (either order of
mention is accepted: "a red circle to the left of a blue square" = "a blue square to the right of a red
circle"). Recall is micro-averaged over all attributes; object precision counts colour-shape pairs
mentioned that are not in the image (hallucinations).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from showo.embedded.shapes import (
    COLOR_NAMES,
    DESCRIBE_PROMPTS,
    NUMBER_WORDS,
    OPPOSITE,
    PLURALS,
    RELATION_PHRASES,
    SHAPES,
    Scene,
    relation,
    render,
    sample_scene,
    scene_rng,
)
from showo.embedded.shapes import (
    caption as reference_caption,
)
from showo.errors import ShowoError

N_IMAGES = 50
FIRST_INDEX = 10_000
PROMPT = DESCRIBE_PROMPTS[0]
KINDS: tuple[str, ...] = ("color", "shape", "object", "count", "relation")
_OBJECT = re.compile(rf"\b({'|'.join(COLOR_NAMES)}) ({'|'.join(SHAPES)})s?\b")


@dataclass(frozen=True)
class CaptionItem:
    index: int
    scene: Scene


def items(n_images: int = N_IMAGES) -> list[CaptionItem]:
    """The pinned held-out scenes (indices FIRST_INDEX ..), disjoint from pope-mini's."""
    if n_images < 1:
        raise ShowoError(f"caption-mini needs at least one image, got {n_images}")
    return [
        CaptionItem(i, sample_scene(scene_rng("heldout", i)))
        for i in range(FIRST_INDEX, FIRST_INDEX + n_images)
    ]


def image(item: CaptionItem, size: int = 64) -> Image.Image:
    return render(item.scene, size)


def attributes(scene: Scene) -> list[tuple[str, str]]:
    """(kind, phrase that must appear in the caption) for each true attribute; a relation's phrase lists
    both accepted wordings separated by "|"."""
    counts = scene.counts()
    out = [("color", c) for c in sorted({c for c, _ in counts})]
    out += [("shape", s) for s in sorted({s for _, s in counts})]
    out += [("object", f"{c} {s}") for c, s in sorted(counts)]
    out += [
        ("count", f"{NUMBER_WORDS[n]} {c} {PLURALS[s]}") for (c, s), n in sorted(counts.items()) if n >= 2
    ]
    objs = scene.objects
    if len(objs) == 2 and len(counts) == 2:
        a, b = objs
        rel = relation(a, b)
        if rel is not None:
            forward = f"{a.color} {a.shape} {RELATION_PHRASES[rel]} a {b.color} {b.shape}"
            backward = f"{b.color} {b.shape} {RELATION_PHRASES[OPPOSITE[rel]]} a {a.color} {a.shape}"
            out.append(("relation", f"{forward}|{backward}"))
    return out


def _states(caption: str, kind: str, phrase: str) -> bool:
    text = " ".join(re.findall(r"[a-z]+", caption.lower()))
    if kind == "object":
        return any(m.group(0).removesuffix("s") == phrase for m in _OBJECT.finditer(text))
    return any(re.search(rf"\b{re.escape(option)}s?\b", text) for option in phrase.split("|"))


def score(captions: Sequence[str], scenes: Sequence[Scene]) -> dict:
    """Recall of true attributes (overall and per kind), object precision, and exact-caption rate."""
    if len(captions) != len(scenes):
        raise ShowoError(f"{len(captions)} captions but {len(scenes)} scenes")
    if not captions:
        raise ShowoError("no captions to score")
    hits: dict[str, list[bool]] = {k: [] for k in KINDS}
    mentioned = correct_mentions = exact = 0
    for text, scene in zip(captions, scenes):
        for kind, phrase in attributes(scene):
            hits[kind].append(_states(text, kind, phrase))
        present = {f"{c} {s}" for c, s in scene.counts()}
        found = {m.group(0).removesuffix("s") for m in _OBJECT.finditer(text.lower())}
        mentioned += len(found)
        correct_mentions += len(found & present)
        exact += text.strip().lower().rstrip(".") == reference_caption(scene)
    every = [h for v in hits.values() for h in v]
    return {
        "recall": float(np.mean(every)),
        "recall_by_kind": {k: float(np.mean(v)) for k, v in hits.items() if v},
        "object_precision": correct_mentions / mentioned if mentioned else 0.0,
        "exact_match": exact / len(captions),
        "n": len(captions),
    }
