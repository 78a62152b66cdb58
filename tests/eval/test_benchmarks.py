"""geneval-mini, pope-mini and caption-mini scored without a model: ground truth scores 1.0, known wrong
outputs score known numbers."""

import numpy as np
import pytest

from showo.embedded import shapes
from showo.embedded.shapes import Scene, ShapeObject
from showo.errors import ShowoError
from showo.eval import caption_mini, geneval_mini, pope_mini
from showo.eval.geneval_mini import PromptSpec, Requirement
from showo.eval.shapes_detector import Detection

PHRASES = {"to the left of": "left", "to the right of": "right", "above": "above", "below": "below"}
OTHER_COLOR = {c: shapes.COLOR_NAMES[(i + 3) % 6] for i, c in enumerate(shapes.COLOR_NAMES)}


def _place(rng, kinds, rel=None):
    """Objects of the given (colour, shape) kinds, apart, the first `rel` of the second if given."""
    while True:
        objs = []
        for color, shape in kinds:
            x, y = rng.uniform(0.2, 0.8, 2)
            objs.append(ShapeObject(shape, color, float(x), float(y), 0.1))
        apart = all(
            np.hypot(a.x - b.x, a.y - b.y) > 2 * shapes.EXTENT * 0.1 + 0.05
            for i, a in enumerate(objs)
            for b in objs[i + 1 :]
        )
        if apart and (rel is None or shapes.relation(objs[0], objs[1]) == rel):
            return Scene(tuple(objs))


def _parse(prompt):
    """(kinds, relation) read from a prompt in the caption grammar."""
    for phrase, rel in PHRASES.items():
        if f" {phrase} " in prompt:
            first, second = prompt.split(f" {phrase} ")
            return [tuple(first.split()[1:]), tuple(second.split()[1:])], rel
    word, color, noun = prompt.split()
    count = {"a": 1, "two": 2, "three": 3}[word]
    return [(color, noun if count == 1 else noun[:-1])] * count, None


def _reference_and_wrong(spec, rng):
    kinds, rel = _parse(spec.prompt)
    right = _place(rng, kinds, rel)
    (c1, s1), *rest = kinds
    third = next(s for s in shapes.SHAPES if s not in {k[1] for k in kinds})
    if spec.tag == "single_object":
        wrong = _place(rng, [(c1, third)])
    elif spec.tag == "colors":
        wrong = _place(rng, [(OTHER_COLOR[c1], s1)])
    elif spec.tag == "counting":
        wrong = _place(rng, kinds[:-1])
    elif spec.tag == "two_object":
        wrong = _place(rng, [kinds[0], (rest[0][0], third)], rel)
    elif spec.tag == "position":
        wrong = _place(rng, kinds, shapes.OPPOSITE[rel])
    else:
        wrong = _place(rng, [(rest[0][0], s1), (c1, rest[0][1])], rel)
    return right, wrong


def test_geneval_prompt_set_is_pinned():
    specs = geneval_mini.prompt_specs()
    assert geneval_mini.digest(specs) == geneval_mini.DIGEST
    assert len(specs) == 6 * geneval_mini.PER_TAG
    assert [s.tag for s in geneval_mini.prompt_specs(2)] == [t for t in geneval_mini.TAGS for _ in range(2)]
    assert len({s.prompt for s in specs if s.tag == "counting"}) == geneval_mini.PER_TAG
    assert PromptSpec.from_dict(specs[70].to_dict()) == specs[70]
    with pytest.raises(ShowoError):
        geneval_mini.prompt_specs(0)


def test_geneval_scores_ground_truth_renders_one_and_violations_zero():
    rng = np.random.default_rng(0)
    specs = geneval_mini.prompt_specs()
    pairs = [_reference_and_wrong(s, rng) for s in specs]
    images = [shapes.render(r, 64) for r, _ in pairs] + [shapes.render(w, 64) for _, w in pairs]
    result = geneval_mini.score(images, specs + specs)
    assert result["tags"] == {t: 0.5 for t in geneval_mini.TAGS}, [
        (r["prompt"], r["reason"]) for r in result["images"][: len(specs)] if not r["correct"]
    ]
    assert result["overall"] == 0.5
    assert result["counts"] == {t: 2 * geneval_mini.PER_TAG for t in geneval_mini.TAGS}
    assert result["prompt_digest"] == geneval_mini.DIGEST
    assert all(r["correct"] for r in result["images"][: len(specs)])


def _det(shape, color, x, y, size=0.2):
    return Detection(color, shape, x, y, size, size, size * size, 0.8)


def test_geneval_checks_follow_geneval_logic():
    count = PromptSpec(
        "counting", "two red circles", (Requirement("circle", 2),), (Requirement("circle", 3),)
    )
    two = [_det("circle", "red", 0.2, 0.5), _det("circle", "blue", 0.7, 0.5)]
    assert geneval_mini.check(count, two)[0]
    assert not geneval_mini.check(count, two + [_det("circle", "red", 0.5, 0.2)])[0]
    assert not geneval_mini.check(count, two[:1])[0]
    position = PromptSpec(
        "position",
        "a red circle to the left of a blue square",
        (Requirement("square"), Requirement("circle", relation="left", relative_to=0)),
    )
    assert geneval_mini.check(position, [_det("circle", "red", 0.2, 0.5), _det("square", "blue", 0.8, 0.45)])[
        0
    ]
    assert not geneval_mini.check(
        position, [_det("circle", "red", 0.8, 0.5), _det("square", "blue", 0.2, 0.5)]
    )[0]
    # diagonal offsets satisfy both axes under GenEval's rule; a nearly vertical one does not satisfy "left"
    diagonal = geneval_mini.relations(_det("circle", "red", 0.2, 0.2), _det("square", "blue", 0.8, 0.8))
    assert diagonal == {"left", "above"}
    assert geneval_mini.relations(_det("circle", "red", 0.48, 0.2), _det("square", "blue", 0.5, 0.8)) == {
        "above"
    }
    assert geneval_mini.relations(_det("circle", "red", 0.5, 0.5), _det("square", "blue", 0.52, 0.5)) == set()
    with pytest.raises(ShowoError):
        geneval_mini.score([], [])


def test_pope_questions_are_balanced_and_split_as_described():
    for split in pope_mini.SPLITS:
        qs = pope_mini.questions(split, n_images=40)
        assert sum(q.answer == "yes" for q in qs) * 2 == len(qs)
        for q in qs:
            present = pope_mini.scene(q.image_index).counts()
            assert (q.answer == "yes") == ((q.color, q.shape) in present)
            assert q.question == f"Is there a {q.color} {q.shape} in the image?"
    adversarial = pope_mini.questions("adversarial", n_images=40)
    for q in adversarial:
        if q.answer == "no":
            present = pope_mini.scene(q.image_index).counts()
            assert any(q.color == c or q.shape == s for c, s in present)
    popular = [q for q in pope_mini.questions("popular", n_images=40) if q.answer == "no"]
    frequency = {}
    for i in range(40):
        for key in pope_mini.scene(i).counts():
            frequency[key] = frequency.get(key, 0) + 1
    top = max(frequency.values())
    assert np.mean([frequency.get((q.color, q.shape), 0) for q in popular]) > np.mean(
        list(frequency.values())
    )
    assert any(frequency.get((q.color, q.shape), 0) == top for q in popular)
    assert pope_mini.questions("random", 5) == pope_mini.questions("random", 5)
    with pytest.raises(ShowoError):
        pope_mini.questions("hard")


def test_pope_scores_known_answers():
    qs = pope_mini.questions("random", n_images=30)
    perfect = pope_mini.score([q.answer.capitalize() + "." for q in qs], qs)
    assert perfect["accuracy"] == perfect["f1"] == 1.0 and perfect["yes_ratio"] == 0.5
    always_yes = pope_mini.score(["yes"] * len(qs), qs)
    assert always_yes["accuracy"] == 0.5 and always_yes["recall"] == 1.0 and always_yes["precision"] == 0.5
    assert always_yes["f1"] == pytest.approx(2 / 3) and always_yes["yes_ratio"] == 1.0
    inverted = pope_mini.score(["No, there is not." if q.answer == "yes" else "Yes" for q in qs], qs)
    assert inverted["accuracy"] == 0.0 and inverted["f1"] == 0.0
    assert pope_mini.parse_answer("There is no red circle") == "no"
    assert pope_mini.parse_answer("I see a red circle") == "yes"
    assert pope_mini.image(0).size == (64, 64)
    with pytest.raises(ShowoError):
        pope_mini.score(["yes"], qs)


def test_caption_mini_scores_perfect_and_known_wrong_captions():
    items = caption_mini.items(40)
    assert len({i.index for i in items}) == 40 and items[0].index >= pope_mini.N_IMAGES
    scenes = [i.scene for i in items]
    perfect = caption_mini.score([shapes.caption(s).capitalize() + "." for s in scenes], scenes)
    assert perfect["recall"] == perfect["object_precision"] == perfect["exact_match"] == 1.0
    scene = Scene((ShapeObject("circle", "red", 0.2, 0.5, 0.1), ShapeObject("square", "blue", 0.8, 0.5, 0.1)))
    assert shapes.caption(scene) == "a red circle to the left of a blue square"
    reversed_wording = caption_mini.score(["a blue square to the right of a red circle"], [scene])
    assert reversed_wording["recall"] == 1.0 and reversed_wording["exact_match"] == 0.0
    # attributes: red, blue, circle, square, red circle, blue square, relation -> 7
    swapped = caption_mini.score(["a blue circle to the left of a red square"], [scene])
    assert swapped["recall"] == pytest.approx(4 / 7)
    assert swapped["recall_by_kind"] == {"color": 1.0, "shape": 1.0, "object": 0.0, "relation": 0.0}
    assert swapped["object_precision"] == 0.0
    partial = caption_mini.score(["a red circle and a green triangle"], [scene])
    assert partial["recall"] == pytest.approx(3 / 7) and partial["object_precision"] == 0.5
    counted = Scene(tuple(ShapeObject("triangle", "green", x, 0.5, 0.09) for x in (0.2, 0.5, 0.8)))
    assert caption_mini.score(["two green triangles"], [counted])["recall"] == pytest.approx(3 / 4)
    with pytest.raises(ShowoError):
        caption_mini.score(["a"], [])
