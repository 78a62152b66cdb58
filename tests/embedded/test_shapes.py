"""The shapes world: determinism, splits, and captions/questions/renders agreeing with the metadata."""

import json
import re

import numpy as np
import pytest
from skimage.measure import label, regionprops

from showo.embedded import shapes
from showo.errors import ShowoError

WORDS = {"a": 1, "two": 2, "three": 3}


def _parse_caption(text: str) -> dict[tuple[str, str], int]:
    """Independent reading of a caption: noun phrases -> counts, relation phrases stripped."""
    text = re.sub(r" (to the left of|to the right of|above|below) ", " and ", text)
    counts: dict[tuple[str, str], int] = {}
    for part in re.split(r", | and ", text):
        word, color, noun = part.split()
        shape = noun[:-1] if word != "a" else noun
        counts[(color, shape)] = counts.get((color, shape), 0) + WORDS[word]
    return counts


@pytest.fixture(scope="module")
def train_scenes():
    return list(shapes.scenes("train", 300))


def test_scenes_are_deterministic_per_seed():
    a, b = list(shapes.scenes("train", 20)), list(shapes.scenes("train", 20))
    assert a == b
    assert shapes.render(a[3], 64).tobytes() == shapes.render(b[3], 64).tobytes()
    assert shapes.questions(a[3], 7) == shapes.questions(b[3], 7)
    assert shapes.sample_scene(5) == shapes.sample_scene(np.random.default_rng(5))
    assert len({json.dumps(s.to_dict()) for s in a}) == 20


def test_splits_are_disjoint():
    train = {json.dumps(s.to_dict()) for s in shapes.scenes("train", 300)}
    heldout = {json.dumps(s.to_dict()) for s in shapes.scenes("heldout", 300)}
    assert not train & heldout
    assert shapes.split_seed("heldout", 0) > shapes.split_seed("train", shapes.HELDOUT_SEED_OFFSET - 1)
    with pytest.raises(ShowoError):
        shapes.split_seed("test", 0)


def test_scene_distribution_covers_the_vocabulary(train_scenes):
    n_objects = {len(s.objects) for s in train_scenes}
    assert n_objects == {1, 2, 3}
    assert {o.shape for s in train_scenes for o in s.objects} == set(shapes.SHAPES)
    assert {o.color for s in train_scenes for o in s.objects} == set(shapes.COLOR_NAMES)
    assert any(max(s.counts().values()) >= 2 for s in train_scenes)


def test_caption_matches_metadata(train_scenes):
    for scene in train_scenes:
        text = shapes.caption(scene)
        assert _parse_caption(text) == scene.counts(), text
        objs = scene.objects
        if len(objs) == 2 and len(scene.counts()) == 2:
            a, b = objs
            dx, dy = a.x - b.x, a.y - b.y
            expected = (
                ("to the left of" if dx < 0 else "to the right of")
                if abs(dx) > abs(dy)
                else ("above" if dy < 0 else "below")
            )
            assert expected in text and text.startswith(f"a {a.color} {a.shape}"), text
            assert max(abs(dx), abs(dy)) >= 2 * min(abs(dx), abs(dy))


def test_render_matches_metadata(train_scenes):
    for scene in train_scenes[:60]:
        pixels = np.asarray(shapes.render(scene, 64)).astype(int)
        assert pixels.shape == (64, 64, 3)
        assert tuple(pixels[0, 0]) == shapes.BACKGROUND
        foreground = np.abs(pixels - np.array(shapes.BACKGROUND)).sum(-1) > 60
        regions = regionprops(label(foreground))
        assert len(regions) == len(scene.objects)
        for obj in scene.objects:
            cy, cx = int(obj.y * 64), int(obj.x * 64)
            assert np.abs(pixels[cy, cx] - np.array(shapes.COLORS[obj.color])).max() <= 3
            nearest = min(
                regions, key=lambda r: np.hypot(r.centroid[1] - obj.x * 64, r.centroid[0] - obj.y * 64)
            )
            assert np.hypot(nearest.centroid[1] - obj.x * 64, nearest.centroid[0] - obj.y * 64) < 1.5


def test_questions_agree_with_metadata(train_scenes):
    kinds = set()
    for i, scene in enumerate(train_scenes):
        counts = scene.counts()
        for q, a in shapes.questions(scene, i):
            if m := re.fullmatch(r"Is there a (\w+) (\w+) in the image\?", q):
                kinds.add("exists")
                assert a == ("yes" if counts.get((m[1], m[2]), 0) else "no"), q
            elif m := re.fullmatch(r"Is there a (\w+) in the image\?", q):
                kinds.add("exists_shape")
                assert a == ("yes" if any(o.shape == m[1] for o in scene.objects) else "no"), q
            elif m := re.fullmatch(r"How many (\w+)s are there\?", q):
                kinds.add("count")
                assert a == shapes.NUMBER_WORDS[sum(o.shape == m[1] for o in scene.objects)], q
            elif m := re.fullmatch(r"What color is the (\w+)\?", q):
                kinds.add("color")
                assert [o.color for o in scene.objects if o.shape == m[1]] == [a], q
            elif m := re.fullmatch(r"What shape is the (\w+) object\?", q):
                kinds.add("shape")
                assert [o.shape for o in scene.objects if o.color == m[1]] == [a], q
            elif m := re.fullmatch(
                r"Is the (\w+) (\w+) (to the left of|to the right of|above|below) the (\w+) (\w+)\?", q
            ):
                kinds.add("position")
                (a_obj,) = [o for o in scene.objects if (o.color, o.shape) == (m[1], m[2])]
                (b_obj,) = [o for o in scene.objects if (o.color, o.shape) == (m[4], m[5])]
                truth = {
                    "to the left of": a_obj.x < b_obj.x,
                    "to the right of": a_obj.x > b_obj.x,
                    "above": a_obj.y < b_obj.y,
                    "below": a_obj.y > b_obj.y,
                }[m[3]]
                assert a == ("yes" if truth else "no"), q
            else:
                raise AssertionError(f"unexpected question {q!r}")
    assert kinds == {"exists", "exists_shape", "count", "color", "shape", "position"}


def test_conversation_is_llava_format_and_asks_every_question(train_scenes):
    for i, scene in enumerate(train_scenes[:50]):
        turns = shapes.conversation(scene, i)
        assert [t["from"] for t in turns] == ["human", "gpt"] * (len(turns) // 2)
        assert turns[0]["value"].startswith("<image>\n")
        assert sum("<image>" in t["value"] for t in turns) == 1
        assert shapes.caption(scene) in [t["value"] for t in turns]
        pairs = [(q["value"].removeprefix("<image>\n"), a["value"]) for q, a in zip(turns[::2], turns[1::2])]
        (described,) = [p for p in pairs if p[0] in shapes.DESCRIBE_PROMPTS]
        assert described[1] == shapes.caption(scene)
        assert sorted(p for p in pairs if p != described) == sorted(shapes.questions(scene, i))


def test_keyframes_move_as_captioned():
    for seed in range(8):
        frames = shapes.keyframes(seed, n=5, size=64)
        assert len(frames) == 5
        direction = frames[0][1].rsplit(" ", 1)[-1]
        assert all(text.endswith(f"moving {direction}") for _, text in frames)
        centres = []
        for image, _ in frames:
            pixels = np.asarray(image).astype(int)
            ys, xs = np.nonzero(np.abs(pixels - np.array(shapes.BACKGROUND)).sum(-1) > 60)
            centres.append((xs.mean(), ys.mean()))
        axis, sign = {"right": (0, 1), "left": (0, -1), "down": (1, 1), "up": (1, -1)}[direction]
        steps = np.diff([c[axis] for c in centres]) * sign
        assert (steps > 5).all()
        start_side = {"right": "left", "left": "right", "down": "top", "up": "bottom"}[direction]
        assert start_side in frames[0][1].split(",")[0]
        assert direction.replace("up", "top").replace("down", "bottom") in frames[-1][1].split(",")[0]
    seqs = list(shapes.keyframe_sequences("heldout", 2, frames=3))
    assert [t for _, t in seqs[0]] == [t for _, t in next(shapes.keyframe_sequences("heldout", 1, frames=3))]


def test_scene_round_trips_through_json(train_scenes):
    scene = train_scenes[1]
    assert shapes.Scene.from_dict(json.loads(json.dumps(scene.to_dict()))) == scene


def test_bad_input_is_a_showo_error():
    with pytest.raises(ShowoError):
        shapes.sample_scene(0, n_objects=4)
    with pytest.raises(ShowoError):
        list(shapes.scenes("validation", 1))
    with pytest.raises(ShowoError):
        shapes.keyframes(0, n=1)
    with pytest.raises(ShowoError):
        shapes.Scene.from_dict(
            {"objects": [{"shape": "star", "color": "red", "x": 0.5, "y": 0.5, "size": 0.1}]}
        )
