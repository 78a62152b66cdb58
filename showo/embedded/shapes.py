"""A seeded world of 1-3 coloured shapes on a plain background, with exact captions and questions.

It is the offline stand-in for image-text data: because every image comes from known metadata, the
captions are exact and generations can be judged (see `showo.eval.shapes_detector`). Colours are six
well-separated hues and shapes are big and axis-aligned, so a colour segmentation still works after a
lossy 64 px tokenizer round trip. Coordinates are fractions of the image side, y pointing down.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image, ImageDraw

from showo.embedded.splits import check_split
from showo.errors import ShowoError

SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "yellow": (235, 205, 20),
    "green": (30, 170, 50),
    "cyan": (20, 190, 210),
    "blue": (35, 60, 220),
    "purple": (160, 40, 200),
}
COLOR_NAMES: tuple[str, ...] = tuple(COLORS)
BACKGROUND: tuple[int, int, int] = (240, 240, 240)
PLURALS: dict[str, str] = {shape: shape + "s" for shape in SHAPES}
NUMBER_WORDS: tuple[str, ...] = ("zero", "one", "two", "three")
RELATIONS: tuple[str, ...] = ("left", "right", "above", "below")
RELATION_PHRASES: dict[str, str] = {
    "left": "to the left of",
    "right": "to the right of",
    "above": "above",
    "below": "below",
}
OPPOSITE: dict[str, str] = {"left": "right", "right": "left", "above": "below", "below": "above"}
DESCRIBE_PROMPTS: tuple[str, ...] = (
    "Describe the image.",
    "What is in this picture?",
    "Give a short caption for the image.",
)
MAX_OBJECTS = 3
# Half-side of a square and circumradius of a triangle, per unit of `size` (a circle's radius): chosen so
# the three shapes cover similar areas. `EXTENT` bounds every shape, used to keep objects apart.
SQUARE_HALF = 0.88
TRIANGLE_RADIUS = 1.3
EXTENT = 1.3
GAP = 0.05
# A relation holds only when the displacement is clearly along one axis.
RELATION_MIN = 0.2
RELATION_MAX_MINOR = 0.5
HELDOUT_SEED_OFFSET = 1_000_000_000
_SUPERSAMPLE = 4


@dataclass(frozen=True)
class ShapeObject:
    """One object: `x`, `y` its centre (fractions of the side, y down), `size` its radius fraction."""

    shape: str
    color: str
    x: float
    y: float
    size: float


@dataclass(frozen=True)
class Scene:
    """The metadata a render, caption and questions all derive from."""

    objects: tuple[ShapeObject, ...]

    def counts(self) -> dict[tuple[str, str], int]:
        """Number of objects per (colour, shape)."""
        out: dict[tuple[str, str], int] = {}
        for obj in self.objects:
            out[(obj.color, obj.shape)] = out.get((obj.color, obj.shape), 0) + 1
        return out

    def to_dict(self) -> dict:
        return {"objects": [asdict(obj) for obj in self.objects]}

    @classmethod
    def from_dict(cls, data: dict) -> Scene:
        objects = tuple(ShapeObject(**obj) for obj in data["objects"])
        for obj in objects:
            if obj.shape not in SHAPES or obj.color not in COLORS:
                raise ShowoError(f"unknown object {obj.color} {obj.shape} in scene metadata")
        return cls(objects)


def as_rng(rng: np.random.Generator | int) -> np.random.Generator:
    """Accept a numpy Generator or an int seed."""
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(int(rng))


def relation(a: ShapeObject | tuple[float, float], b: ShapeObject | tuple[float, float]) -> str | None:
    """Where `a` is relative to `b` ("left", "right", "above", "below"), or None when ambiguous.

    Takes objects or (x, y) centres, so detections are judged by the same rule the captions follow.
    """
    ax, ay = (a.x, a.y) if isinstance(a, ShapeObject) else a
    bx, by = (b.x, b.y) if isinstance(b, ShapeObject) else b
    dx, dy = ax - bx, ay - by
    major, minor = max(abs(dx), abs(dy)), min(abs(dx), abs(dy))
    if major < RELATION_MIN or minor > RELATION_MAX_MINOR * major:
        return None
    if abs(dx) >= abs(dy):
        return "left" if dx < 0 else "right"
    return "above" if dy < 0 else "below"


def _sample_kinds(rng: np.random.Generator, n: int) -> list[tuple[str, str]]:
    """(colour, shape) per object; duplicates are drawn often enough that counting is learnable."""
    combos = [(c, s) for c in COLOR_NAMES for s in SHAPES]
    picks = [combos[i] for i in rng.permutation(len(combos))[:n]]
    if n == 2 and rng.random() < 0.3:
        picks = [picks[0], picks[0]]
    elif n == 3:
        u = rng.random()
        if u < 0.25:
            picks = [picks[0]] * 3
        elif u < 0.6:
            picks = [picks[0], picks[0], picks[1]]
    return picks


def _place(rng: np.random.Generator, kinds: list[tuple[str, str]]) -> list[ShapeObject] | None:
    lo, hi = (0.09, 0.13) if len(kinds) == 3 else (0.10, 0.16)
    placed: list[ShapeObject] = []
    for color, shape in kinds:
        for _ in range(100):
            size = float(rng.uniform(lo, hi))
            margin = EXTENT * size + 0.02
            x, y = (float(v) for v in rng.uniform(margin, 1.0 - margin, size=2))
            if all(math.hypot(x - o.x, y - o.y) >= EXTENT * (size + o.size) + GAP for o in placed):
                placed.append(ShapeObject(shape, color, round(x, 4), round(y, 4), round(size, 4)))
                break
        else:
            return None
    if len(kinds) == 2 and kinds[0] != kinds[1] and relation(placed[0], placed[1]) is None:
        return None
    return placed


def sample_scene(rng: np.random.Generator | int, n_objects: int | None = None) -> Scene:
    """A random scene of `n_objects` (default 1-3, uniform); two distinct objects are always clearly
    left/right/above/below each other so the caption's relation is exact."""
    rng = as_rng(rng)
    n = int(rng.integers(1, MAX_OBJECTS + 1)) if n_objects is None else n_objects
    if not 1 <= n <= MAX_OBJECTS:
        raise ShowoError(f"a shapes scene holds 1-{MAX_OBJECTS} objects, got {n}")
    kinds = _sample_kinds(rng, n)
    while True:
        placed = _place(rng, kinds)
        if placed is not None:
            return Scene(tuple(placed))


def draw_object(draw: ImageDraw.ImageDraw, obj: ShapeObject, side: float) -> None:
    """Draw one object on a canvas `side` pixels wide."""
    cx, cy, r = obj.x * side, obj.y * side, obj.size * side
    fill = COLORS[obj.color]
    if obj.shape == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
    elif obj.shape == "square":
        h = SQUARE_HALF * r
        draw.rectangle([cx - h, cy - h, cx + h, cy + h], fill=fill)
    elif obj.shape == "triangle":
        big = TRIANGLE_RADIUS * r
        angles = (-90.0, 30.0, 150.0)
        pts = [(cx + big * math.cos(math.radians(a)), cy + big * math.sin(math.radians(a))) for a in angles]
        draw.polygon(pts, fill=fill)
    else:
        raise ShowoError(f"unknown shape {obj.shape!r}; expected one of {', '.join(SHAPES)}")


def render(scene: Scene, size: int = 64) -> Image.Image:
    """Anti-aliased RGB render (drawn at 4x, box-downsampled); deterministic for a given scene."""
    side = size * _SUPERSAMPLE
    image = Image.new("RGB", (side, side), BACKGROUND)
    draw = ImageDraw.Draw(image)
    for obj in scene.objects:
        draw_object(draw, obj, side)
    return image.resize((size, size), Image.Resampling.BOX)


def noun_phrase(color: str, shape: str, count: int = 1) -> str:
    """ "a red circle", "two red circles"."""
    if count == 1:
        return f"a {color} {shape}"
    return f"{NUMBER_WORDS[count]} {color} {PLURALS[shape]}"


def _join(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def caption(scene: Scene) -> str:
    """The exact caption: "a red circle to the left of a blue square", "two green triangles and a
    cyan square" (groups of identical objects are counted and listed left to right)."""
    objs = scene.objects
    if len(objs) == 2 and (objs[0].color, objs[0].shape) != (objs[1].color, objs[1].shape):
        rel = relation(objs[0], objs[1])
        if rel is not None:
            first, second = (noun_phrase(o.color, o.shape) for o in objs)
            return f"{first} {RELATION_PHRASES[rel]} {second}"
    counts = scene.counts()
    leftmost = {k: min(o.x for o in objs if (o.color, o.shape) == k) for k in counts}
    order = sorted(counts, key=lambda k: leftmost[k])
    return _join([noun_phrase(c, s, counts[(c, s)]) for c, s in order])


def _unique_objects(scene: Scene) -> list[ShapeObject]:
    counts = scene.counts()
    return [o for o in scene.objects if counts[(o.color, o.shape)] == 1]


def questions(scene: Scene, rng: np.random.Generator | int) -> list[tuple[str, str]]:
    """GenEval/POPE-style (question, answer) pairs with exact short answers: existence (yes/no),
    count (a number word), colour, shape and position (yes/no)."""
    rng = as_rng(rng)
    counts = scene.counts()
    present = sorted(counts)
    out: list[tuple[str, str]] = []
    color, shape = present[int(rng.integers(len(present)))]
    out.append((f"Is there {noun_phrase(color, shape)} in the image?", "yes"))
    absent = [(c, s) for c in COLOR_NAMES for s in SHAPES if (c, s) not in counts]
    color, shape = absent[int(rng.integers(len(absent)))]
    out.append((f"Is there {noun_phrase(color, shape)} in the image?", "no"))
    shape_counts = {s: sum(n for (_, s2), n in counts.items() if s2 == s) for s in SHAPES}
    shape = SHAPES[int(rng.integers(len(SHAPES)))]
    out.append((f"Is there a {shape} in the image?", "yes" if shape_counts[shape] else "no"))
    shape = SHAPES[int(rng.integers(len(SHAPES)))]
    out.append((f"How many {PLURALS[shape]} are there?", NUMBER_WORDS[shape_counts[shape]]))
    single_shapes = [s for s in SHAPES if shape_counts[s] == 1]
    if single_shapes:
        shape = single_shapes[int(rng.integers(len(single_shapes)))]
        color = next(o.color for o in scene.objects if o.shape == shape)
        out.append((f"What color is the {shape}?", color))
    color_counts = {c: sum(n for (c2, _), n in counts.items() if c2 == c) for c in COLOR_NAMES}
    single_colors = [c for c in COLOR_NAMES if color_counts[c] == 1]
    if single_colors:
        color = single_colors[int(rng.integers(len(single_colors)))]
        shape = next(o.shape for o in scene.objects if o.color == color)
        out.append((f"What shape is the {color} object?", shape))
    unique = _unique_objects(scene)
    pairs = [(a, b) for a in unique for b in unique if a is not b and relation(a, b) is not None]
    if pairs:
        a, b = pairs[int(rng.integers(len(pairs)))]
        rel = relation(a, b)
        truthful = bool(rng.random() < 0.5)
        asked = rel if truthful else OPPOSITE[rel]
        question = f"Is the {a.color} {a.shape} {RELATION_PHRASES[asked]} the {b.color} {b.shape}?"
        out.append((question, "yes" if truthful else "no"))
    return out


def conversation(scene: Scene, rng: np.random.Generator | int) -> list[dict[str, str]]:
    """A LLaVA-format conversation: every question `questions` draws, in random order, with the caption
    request at a random turn; "<image>\\n" opens the first human turn.

    All questions rather than one or two: a yes/no answer is a single target token, and with one or two
    questions per image the tiny chain's pope-mini was still 0.50-0.55 after 1,000 tuning steps; with all of
    them it passes 0.8 within 1,000-2,000 (docs/evaluation.md). LLaVA's conversations are multi-turn too.
    """
    rng = as_rng(rng)
    qa = questions(scene, rng)
    turns = [qa[int(i)] for i in rng.permutation(len(qa))]
    describe = (DESCRIBE_PROMPTS[int(rng.integers(len(DESCRIBE_PROMPTS)))], caption(scene))
    turns.insert(int(rng.integers(len(turns) + 1)), describe)
    out: list[dict[str, str]] = []
    for i, (question, answer) in enumerate(turns):
        out.append({"from": "human", "value": ("<image>\n" if i == 0 else "") + question})
        out.append({"from": "gpt", "value": answer})
    return out


def region(x: float, y: float) -> str:
    """Coarse place of a centre on a 3x3 grid: "at the top left", "in the center", "on the right"."""
    col = "left" if x < 1 / 3 else "right" if x > 2 / 3 else "center"
    row = "top" if y < 1 / 3 else "bottom" if y > 2 / 3 else "middle"
    if row == "middle":
        return "in the center" if col == "center" else f"on the {col}"
    return f"at the {row}" if col == "center" else f"at the {row} {col}"


_MOTIONS: dict[str, tuple[tuple[float, float], tuple[float, float]]] = {
    "right": ((0.18, 0.0), (0.82, 0.0)),
    "left": ((0.82, 0.0), (0.18, 0.0)),
    "down": ((0.0, 0.18), (0.0, 0.82)),
    "up": ((0.0, 0.82), (0.0, 0.18)),
}


def keyframes(rng: np.random.Generator | int, n: int = 4, size: int = 64) -> list[tuple[Image.Image, str]]:
    """`n` frames of one object moving in a straight line, each with its own exact caption
    ("a red circle on the left, moving right")."""
    if n < 2:
        raise ShowoError(f"a keyframe sequence needs at least 2 frames, got {n}")
    rng = as_rng(rng)
    color = COLOR_NAMES[int(rng.integers(len(COLOR_NAMES)))]
    shape = SHAPES[int(rng.integers(len(SHAPES)))]
    radius = float(rng.uniform(0.10, 0.13))
    direction = tuple(_MOTIONS)[int(rng.integers(len(_MOTIONS)))]
    (sx, sy), (ex, ey) = _MOTIONS[direction]
    across = float(rng.uniform(0.25, 0.75))
    frames = []
    for i in range(n):
        t = i / (n - 1)
        x = sx + (ex - sx) * t if direction in ("left", "right") else across
        y = sy + (ey - sy) * t if direction in ("up", "down") else across
        obj = ShapeObject(shape, color, round(x, 4), round(y, 4), round(radius, 4))
        text = f"{noun_phrase(color, shape)} {region(obj.x, obj.y)}, moving {direction}"
        frames.append((render(Scene((obj,)), size), text))
    return frames


def split_seed(split: str, index: int) -> int:
    """The seed of item `index` of a split: train and held-out use disjoint seed ranges."""
    check_split(split)
    if not 0 <= index < HELDOUT_SEED_OFFSET:
        raise ShowoError(f"shapes index {index} out of range 0..{HELDOUT_SEED_OFFSET - 1}")
    return index + (HELDOUT_SEED_OFFSET if split == "heldout" else 0)


def scene_rng(split: str, index: int) -> np.random.Generator:
    """The generator for item `index`: draw the scene from it first, then its questions/conversation."""
    return np.random.default_rng(split_seed(split, index))


def scenes(split: str, n: int, start: int = 0) -> Iterator[Scene]:
    """Scenes `start .. start+n-1` of a split; the same on every machine."""
    for index in range(start, start + n):
        yield sample_scene(scene_rng(split, index))


def keyframe_sequences(
    split: str, n: int, frames: int = 4, size: int = 64, start: int = 0
) -> Iterator[list[tuple[Image.Image, str]]]:
    """Keyframe sequences of a split, seeded apart from `scenes` (a second stream of the same seed)."""
    for index in range(start, start + n):
        yield keyframes(np.random.default_rng([1, split_seed(split, index)]), frames, size)
