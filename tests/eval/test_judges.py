"""The judges are validated on ground truth: the shapes detector on held-out renders (clean and degraded),
the digits classifier on held-out real digits (as stored and after the image round trip)."""

import numpy as np
import pytest
from PIL import Image

from showo.embedded import digits, shapes
from showo.errors import ShowoError
from showo.eval import degrade
from showo.eval.digits_classifier import default_classifier
from showo.eval.shapes_detector import Detection, default_detector, matches_scene


@pytest.fixture(scope="module")
def detector():
    return default_detector()


@pytest.fixture(scope="module")
def heldout():
    scenes = list(shapes.scenes("heldout", 300))
    return scenes, [shapes.render(s, 64) for s in scenes]


def _accuracy(detector, scenes, images) -> float:
    return float(np.mean([matches_scene(detector.detect(im), s) for s, im in zip(scenes, images)]))


def test_detector_finds_every_object_on_clean_heldout_renders(detector, heldout):
    scenes, images = heldout
    assert _accuracy(detector, scenes, images) >= 0.99
    big = scenes[:60]
    assert _accuracy(detector, big, [shapes.render(s, 128) for s in big]) >= 0.99


@pytest.mark.parametrize(
    "name,degradation,floor",
    [
        ("blur", lambda im, rng: degrade.blur(im, 1.0), 0.97),
        ("resample", lambda im, rng: degrade.resample(im, 2), 0.97),
        ("noise", lambda im, rng: degrade.noise(im, 12.0, rng), 0.97),
        ("jpeg30", lambda im, rng: degrade.jpeg(im, 30), 0.93),
    ],
)
def test_detector_is_robust_to_degraded_renders(detector, heldout, name, degradation, floor):
    scenes, images = heldout
    rng = np.random.default_rng(0)
    degraded = [degradation(im, rng) for im in images[:150]]
    assert _accuracy(detector, scenes[:150], degraded) >= floor, name


def test_detector_reports_positions_and_ignores_background(detector):
    scene = shapes.Scene(
        (
            shapes.ShapeObject("square", "red", 0.25, 0.3, 0.12),
            shapes.ShapeObject("triangle", "cyan", 0.7, 0.75, 0.12),
        )
    )
    found = detector.detect(shapes.render(scene, 64))
    assert [(d.color, d.shape) for d in found] == [("red", "square"), ("cyan", "triangle")]
    assert abs(found[0].x - 0.25) < 0.02 and abs(found[0].y - 0.3) < 0.02
    assert abs(found[0].width - 2 * shapes.SQUARE_HALF * 0.12) < 0.04
    assert detector.detect(Image.new("RGB", (64, 64), shapes.BACKGROUND)) == []
    gray = degrade.noise(Image.new("RGB", (64, 64), (128, 128, 128)), 4.0, np.random.default_rng(1))
    assert detector.detect(gray) == []
    assert not matches_scene(found[:1], scene)
    wrong = [Detection("red", "circle", f.x, f.y, f.width, f.height, f.area, f.extent) for f in found]
    assert not matches_scene(wrong, scene)


def test_detector_does_not_force_noise_into_shapes(detector):
    """An untrained generator's output (coloured blotches) must not read as objects."""
    rng = np.random.default_rng(0)
    with_detections = 0
    for _ in range(50):
        blotches = Image.fromarray(rng.uniform(0, 255, (16, 16, 3)).astype(np.uint8)).resize(
            (64, 64), Image.Resampling.BICUBIC
        )
        image = Image.blend(Image.new("RGB", (64, 64), (150, 170, 150)), blotches, float(rng.uniform(0.3, 1)))
        with_detections += bool(detector.detect(image))
    assert with_detections <= 3


@pytest.fixture(scope="module")
def classifier():
    return default_classifier()


def test_digits_classifier_on_heldout_real_digits(classifier):
    images, labels = digits.arrays("heldout")
    accuracy = float((classifier.predict_arrays(images) == labels).mean())
    assert accuracy >= 0.95
    items = list(digits.digits("heldout", size=64))
    round_trip = classifier.accuracy([d.image for d in items], [d.label for d in items])
    assert round_trip >= 0.95
    blurred = classifier.accuracy([degrade.blur(d.image, 1.5) for d in items], [d.label for d in items])
    assert blurred >= 0.9
    at_128 = [digits.upscale(x, 128) for x in images[:100]]
    assert classifier.accuracy(at_128, labels[:100]) >= 0.95


def test_digits_classifier_scores_wrong_intents_as_wrong(classifier):
    items = list(digits.digits("heldout"))[:100]
    shifted = [(d.label + 1) % 10 for d in items]
    assert classifier.accuracy([d.image for d in items], shifted) <= 0.05
    blank = Image.new("RGB", (64, 64), (0, 0, 0))
    assert classifier.predict([blank]).shape == (1,)
    with pytest.raises(ShowoError):
        classifier.accuracy([blank], [1, 2])
    with pytest.raises(ShowoError):
        classifier.predict_arrays(np.zeros((2, 4, 4)))


def test_validation_report_is_one_json_line(capsys):
    import json

    from showo.eval import validate

    assert validate.main(["20"]) == 0
    report = json.loads(capsys.readouterr().out.strip())
    assert set(report["shapes_detector_scene_accuracy"]) == set(validate.DEGRADATIONS)
    assert report["shapes_detector_scene_accuracy"]["clean"] == 1.0
    assert report["digits_classifier_accuracy"]["heldout_8x8"] >= 0.95
