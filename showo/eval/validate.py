"""Measure the judges on ground truth and print one JSON line: `python -m showo.eval.validate`.

The shapes detector: share of held-out scenes whose every object is found with the right colour,
shape and position, on clean renders and after each degradation. The digits classifier: accuracy on
the held-out real digits as stored, after the 64 px upscale -> 8x8 round trip, and blurred.
"""

from __future__ import annotations

import json
import sys

import numpy as np

from showo.embedded import digits, shapes
from showo.eval import degrade
from showo.eval.digits_classifier import default_classifier
from showo.eval.shapes_detector import default_detector, matches_scene

DEGRADATIONS = {
    "clean": lambda image, rng: image,
    "blur_sigma1": lambda image, rng: degrade.blur(image, 1.0),
    "jpeg_q30": lambda image, rng: degrade.jpeg(image, 30),
    "jpeg_q15": lambda image, rng: degrade.jpeg(image, 15),
    "resample_x2": lambda image, rng: degrade.resample(image, 2),
    "noise_sigma12": lambda image, rng: degrade.noise(image, 12.0, rng),
    "blur_noise_jpeg": lambda image, rng: degrade.jpeg(degrade.noise(degrade.blur(image, 0.8), 8.0, rng), 40),
}


def detector_accuracy(n_scenes: int = 500, size: int = 64) -> dict[str, float]:
    detector = default_detector()
    scenes = list(shapes.scenes("heldout", n_scenes))
    images = [shapes.render(scene, size) for scene in scenes]
    out = {}
    for name, degradation in DEGRADATIONS.items():
        rng = np.random.default_rng(0)
        hits = [matches_scene(detector.detect(degradation(im, rng)), s) for s, im in zip(scenes, images)]
        out[name] = float(np.mean(hits))
    return out


def classifier_accuracy(size: int = 64) -> dict[str, float]:
    classifier = default_classifier()
    arrays, labels = digits.arrays("heldout")
    images = [digits.upscale(x, size) for x in arrays]
    return {
        "heldout_8x8": float((classifier.predict_arrays(arrays) == labels).mean()),
        "heldout_round_trip": classifier.accuracy(images, labels),
        "heldout_blur_sigma1.5": classifier.accuracy([degrade.blur(im, 1.5) for im in images], labels),
    }


def main(argv: list[str] | None = None) -> int:
    n = int((argv if argv is not None else sys.argv[1:] or ["500"])[0])
    result = {
        "shapes_detector_scene_accuracy": detector_accuracy(n),
        "n_scenes": n,
        "digits_classifier_accuracy": classifier_accuracy(),
        "n_digits": int(len(digits.split_indices("heldout"))),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
