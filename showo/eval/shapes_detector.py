"""A detector for the shapes world: colour segmentation plus shape classification by geometry.

It plays the part of GenEval's Mask2Former + CLIP colour classifier for images generated in the shapes
world. Foreground is what is saturated (the background is grey), colour is the nearest palette hue, and
shape comes from a few geometric features of each blob (how much of its bounding box it fills, where its
centroid sits, whether the box corners are filled...) fed to a tiny classifier that is fitted at
construction on renders passed through `showo.eval.degrade` (no stored weights). Its accuracy on
held-out ground-truth renders, clean and degraded, is checked in the tests.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image
from scipy import ndimage
from skimage.morphology import convex_hull_image
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from showo.embedded.shapes import COLOR_NAMES, COLORS, EXTENT, SHAPES, Scene, ShapeObject, render
from showo.eval.degrade import random_degradation

TRAIN_RENDERS = 600
# How far beyond the feature ranges seen in (degraded) training renders a blob may lie, per feature,
# as a fraction of that range.
RANGE_MARGIN = 0.25


@dataclass(frozen=True)
class Detection:
    """One detected object; positions and sizes are fractions of the image side (y down)."""

    color: str
    shape: str
    x: float
    y: float
    width: float
    height: float
    area: float
    extent: float


def _hue_table() -> np.ndarray:
    """Palette index for each of PIL's 256 hue levels (nearest hue on the colour circle)."""
    palette = np.array([colorsys.rgb_to_hsv(*(v / 255 for v in COLORS[name]))[0] for name in COLOR_NAMES])
    levels = np.arange(256) / 256.0
    distance = np.abs(levels[:, None] - palette)
    return np.minimum(distance, 1.0 - distance).argmin(-1)


@dataclass(frozen=True)
class Segment:
    """One object-sized blob: its mask cropped to its box, the box's top-left corner, its colour and the
    share of its pixels that have that colour."""

    mask: np.ndarray
    top: int
    left: int
    color: int
    purity: float


FEATURES: tuple[str, ...] = (
    "extent",
    "centroid_y",
    "corner_fill",
    "aspect",
    "top_bottom",
    "reach",
    "solidity",
)


def blob_features(mask: np.ndarray) -> np.ndarray:
    """Scale-free geometry of one blob: fill of its box (square ~1, disc ~0.79, triangle ~0.5), centroid
    height in the box (an upright triangle's sits low), fill of the box corners, aspect, the width of the
    top quarter over the bottom quarter, farthest pixel over the equal-area disc radius, and solidity
    (area over convex-hull area: ~1 for every real shape, lower for ragged noise)."""
    ys, xs = np.nonzero(mask)
    top, left = ys.min(), xs.min()
    h, w = ys.max() - top + 1, xs.max() - left + 1
    box = mask[top : top + h, left : left + w]
    area = float(box.sum())
    gy, gx = np.mgrid[0:h, 0:w]
    u, v = (gx + 0.5) / w * 2 - 1, (gy + 0.5) / h * 2 - 1
    corners = np.abs(u) + np.abs(v) > 1.3
    quarter = max(1, h // 4)
    top_fill, bottom_fill = box[:quarter].mean(), box[-quarter:].mean()
    cy, cx = ys.mean(), xs.mean()
    reach = np.sqrt(((ys - cy) ** 2 + (xs - cx) ** 2).max()) + 0.5
    return np.array(
        [
            area / (h * w),
            (cy + 0.5 - top) / h,
            box[corners].mean() if corners.any() else 0.0,
            w / h,
            top_fill / max(bottom_fill, 1e-6),
            reach / np.sqrt(area / np.pi),
            area / max(float(convex_hull_image(box).sum()), 1.0),
        ]
    )


class ShapesDetector:
    """`detect(image) -> list[Detection]` for any image size (shapes are read at their own scale).

    `min_saturation` / `min_value` decide what is an object rather than background; blobs smaller than
    `min_area` (fraction of the image) are noise; `split_fraction` is the share of a second colour that
    makes a blob count as two touching objects. A blob is reported only when at least `min_purity` of it
    has its colour and its geometry lies within what the renders of its shape showed (junk such as an
    untrained model's noise is not forced into a shape). The shape classifier is fitted on `train_renders`
    degraded single-object renders drawn from `seed` (about a second on one core).
    """

    def __init__(
        self,
        min_saturation: float = 0.35,
        min_value: float = 0.2,
        min_area: float = 0.012,
        split_fraction: float = 0.3,
        min_purity: float = 0.7,
        train_renders: int = TRAIN_RENDERS,
        seed: int = 0,
    ):
        self.min_saturation = min_saturation
        self.min_value = min_value
        self.min_area = min_area
        self.split_fraction = split_fraction
        self.min_purity = min_purity
        self.hue_table = _hue_table()
        self.ranges: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.classifier = self._fit(train_renders, seed)

    def _fit(self, n: int, seed: int) -> Pipeline:
        rng = np.random.default_rng(seed)
        features, targets = [], []
        for i in range(n):
            shape = SHAPES[i % len(SHAPES)]
            size = float(rng.uniform(0.08, 0.17))
            x, y = (float(v) for v in rng.uniform(EXTENT * size + 0.02, 1 - EXTENT * size - 0.02, 2))
            color = COLOR_NAMES[int(rng.integers(len(COLOR_NAMES)))]
            side = 128 if i % 6 == 5 else 64
            image = random_degradation(render(Scene((ShapeObject(shape, color, x, y, size),)), side), rng)
            segments, _ = self.segment(image)
            if segments:
                features.append(blob_features(max(segments, key=lambda g: g.mask.sum()).mask))
                targets.append(shape)
        features, targets = np.stack(features), np.array(targets)
        for shape in SHAPES:
            own = features[targets == shape]
            lo, hi = own.min(0), own.max(0)
            margin = RANGE_MARGIN * (hi - lo)
            self.ranges[shape] = (lo - margin, hi + margin)
        model = make_pipeline(StandardScaler(), LogisticRegression(C=10.0, max_iter=2000))
        return model.fit(features, targets)

    def color_map(self, image: Image.Image) -> np.ndarray:
        """Per-pixel palette index (into `COLOR_NAMES`), -1 for background."""
        hsv = np.asarray(image.convert("RGB").convert("HSV"))
        foreground = (hsv[..., 1] >= self.min_saturation * 255) & (hsv[..., 2] >= self.min_value * 255)
        return np.where(foreground, self.hue_table[hsv[..., 0]], -1)

    def segment(self, image: Image.Image) -> tuple[list[Segment], tuple[int, int]]:
        """Object-sized blobs and the image's (height, width); a blob holding two colours in force is
        split by colour (touching objects)."""
        labels = self.color_map(image)
        min_pixels = max(4, int(self.min_area * labels.size))
        blobs, _ = ndimage.label(labels >= 0)
        out: list[Segment] = []
        for index, box in enumerate(ndimage.find_objects(blobs), start=1):
            blob = blobs[box] == index
            size = int(blob.sum())
            if size < min_pixels:
                continue
            colors = labels[box]
            counts = np.bincount(colors[blob], minlength=len(COLOR_NAMES))
            ranked = np.argsort(counts, kind="stable")[::-1]
            split = counts[ranked[1]] >= max(self.split_fraction * size, min_pixels)
            for color in ranked[:2] if split else ranked[:1]:
                mask = blob & (colors == color) if split else blob
                parts, m = ndimage.label(ndimage.binary_fill_holes(mask))
                for part, sub in enumerate(ndimage.find_objects(parts), start=1):
                    part_mask = parts[sub] == part
                    if part_mask.sum() >= min_pixels:
                        top, left = box[0].start + sub[0].start, box[1].start + sub[1].start
                        purity = float(counts[ranked[:2] if split else color].sum() / size)
                        out.append(Segment(part_mask, top, left, int(color), purity))
        return out, labels.shape

    def detect(self, image: Image.Image) -> list[Detection]:
        """Objects found in `image`, sorted left to right."""
        segments, (height, width) = self.segment(image)
        if not segments:
            return []
        features = np.stack([blob_features(seg.mask) for seg in segments])
        shapes = self.classifier.predict(features)
        out = []
        for seg, shape, feats in zip(segments, shapes, features):
            lo, hi = self.ranges[str(shape)]
            if seg.purity < self.min_purity or np.any(feats < lo) or np.any(feats > hi):
                continue
            ys, xs = np.nonzero(seg.mask)
            out.append(
                Detection(
                    color=COLOR_NAMES[seg.color],
                    shape=str(shape),
                    x=float((seg.left + xs.mean() + 0.5) / width),
                    y=float((seg.top + ys.mean() + 0.5) / height),
                    width=float(seg.mask.shape[1] / width),
                    height=float(seg.mask.shape[0] / height),
                    area=float(seg.mask.sum() / (height * width)),
                    extent=float(feats[0]),
                )
            )
        return sorted(out, key=lambda d: (d.x, d.y))


@lru_cache(maxsize=1)
def default_detector() -> ShapesDetector:
    """The detector with default settings, fitted once per process."""
    return ShapesDetector()


def matches_scene(detections: list[Detection], scene: Scene, tolerance: float = 0.08) -> bool:
    """True when the detections are exactly the scene's objects: same colours and shapes, one to one,
    each centre within `tolerance` (fraction of the side) of its object."""
    if len(detections) != len(scene.objects):
        return False
    remaining = list(detections)
    for obj in sorted(scene.objects, key=lambda o: (o.x, o.y)):
        candidates = [
            d
            for d in remaining
            if (d.color, d.shape) == (obj.color, obj.shape)
            and np.hypot(d.x - obj.x, d.y - obj.y) <= tolerance
        ]
        if not candidates:
            return False
        remaining.remove(min(candidates, key=lambda d: np.hypot(d.x - obj.x, d.y - obj.y)))
    return True
