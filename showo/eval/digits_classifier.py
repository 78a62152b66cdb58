"""The judge for class-conditional digit generation: a scikit-learn SVM trained on the real digits.

Generated images are box-averaged down to the 8x8, 0..16 form the real digits are stored in
(`showo.embedded.digits.downscale`) and classified; accuracy against the intended class is the score.
The SVM is fitted on the train split, both as stored and after the upscale -> downscale round trip the
generated images go through, so the judge sees what it was trained on. Validated in the tests on the
held-out split.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np
from PIL import Image
from sklearn.svm import SVC

from showo.embedded.digits import arrays, downscale, upscale
from showo.errors import ShowoError


class DigitsClassifier:
    """`predict(images) -> labels`, `accuracy(images, labels) -> float`; fitted at construction (<1 s)."""

    def __init__(self, size: int = 64, gamma: float = 0.001, c: float = 10.0):
        images, labels = arrays("train")
        round_trip = np.stack([downscale(upscale(x, size)) for x in images])
        features = np.concatenate([images, round_trip]).reshape(-1, 64)
        self.model = SVC(gamma=gamma, C=c).fit(features, np.concatenate([labels, labels]))

    def predict_arrays(self, digits: np.ndarray) -> np.ndarray:
        """Labels of 8x8 arrays of 0..16 intensities, shaped [N, 8, 8]."""
        digits = np.asarray(digits, dtype=np.float32)
        if digits.ndim != 3 or digits.shape[1:] != (8, 8):
            raise ShowoError(f"digits to classify must be shaped [N, 8, 8], got {tuple(digits.shape)}")
        return self.model.predict(digits.reshape(len(digits), 64)).astype(np.int64)

    def predict(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Labels of digit images of any size (bright strokes on a dark background, as the data)."""
        if not images:
            return np.zeros(0, dtype=np.int64)
        return self.predict_arrays(np.stack([downscale(image) for image in images]))

    def accuracy(self, images: Sequence[Image.Image], labels: Sequence[int]) -> float:
        """Fraction of images judged to be their intended class."""
        if len(images) != len(labels):
            raise ShowoError(f"{len(images)} images but {len(labels)} intended labels")
        if not images:
            raise ShowoError("no digit images to judge")
        return float((self.predict(images) == np.asarray(labels)).mean())


@lru_cache(maxsize=1)
def default_classifier() -> DigitsClassifier:
    """The classifier with default settings, fitted once per process."""
    return DigitsClassifier()
