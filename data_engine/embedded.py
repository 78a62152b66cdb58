"""`embedded:NAME` sources: the offline data of `showo.embedded` (shapes world, digits, photos, pydoc text).

Images are generated at the build resolution (the generator is the original, so nothing is upsampled)
and captions are exact, so the `template` recaptioner applies. The shapes world is unbounded: `--limit`
sets how many scenes to draw (default `DEFAULT_COUNT`); the other sets are finite.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from data_engine.sources import RawSample, Source, Unit
from showo.errors import ShowoError

KINDS = ("shapes", "shapes-instruct", "shapes-keyframes", "digits", "photos", "text")
DEFAULT_COUNT = {"shapes": 2048, "shapes-instruct": 2048, "shapes-keyframes": 512}
KEYFRAMES = 4


class EmbeddedSource(Source):
    """`embedded:NAME`: the offline data of `showo.embedded`, generated at the build resolution (the
    generator is the original, so nothing is upsampled). Its captions are exact (`template`)."""

    kind = "embedded"
    has_templates = True

    def __init__(self, name: str, split: str = "train", count: int | None = None):
        if name not in KINDS:
            raise ShowoError(f"unknown embedded source {name!r}; expected one of {', '.join(KINDS)}")
        super().__init__(name, name if split == "train" else f"{name}-{split}")
        from showo.embedded.splits import check_split

        self.name, self.split = name, check_split(split)
        self.spec = f"embedded:{name}?split={split}"
        self.documents: list[str] = []
        if name == "text":
            from showo.embedded import text

            self.documents = text.documents(split)
        natural = self._natural_count()
        infinite = name in DEFAULT_COUNT  # the shapes world is generated: any count works
        self.count = natural if count is None else count if infinite else min(count, natural)

    def _natural_count(self) -> int:
        if self.name in DEFAULT_COUNT:
            return DEFAULT_COUNT[self.name]
        if self.name == "digits":
            from showo.embedded import digits

            return len(digits.split_indices(self.split))
        if self.name == "photos":
            from showo.embedded import photos

            return len(photos.names(self.split))
        return len(self.documents)

    def __len__(self) -> int:
        return self.count

    def fingerprint(self) -> str:
        return f"{self.spec}&count={self.count}"

    def samples(self, unit: Unit, resolution: int) -> Iterator[RawSample]:
        make = getattr(self, "_" + self.name.replace("-", "_"))
        for position, index in enumerate(range(unit.start, unit.stop)):
            sample = make(index, resolution)
            sample.position = position
            yield sample

    def _shapes(self, index: int, resolution: int) -> RawSample:
        from showo.embedded import shapes

        rng = shapes.scene_rng(self.split, index)
        scene = shapes.sample_scene(rng)
        text = shapes.caption(scene)
        meta = {"qa": [list(qa) for qa in shapes.questions(scene, rng)], "scene": scene.to_dict()}
        image = shapes.render(scene, resolution)
        return RawSample(
            0,
            f"shapes:{self.split}:{index}",
            "image_text",
            images=[image],
            caption=text,
            template=text,
            meta=meta,
        )

    def _shapes_instruct(self, index: int, resolution: int) -> RawSample:
        from showo.embedded import shapes

        rng = shapes.scene_rng(self.split, index)
        scene = shapes.sample_scene(rng)
        turns = shapes.conversation(scene, rng)
        text = shapes.caption(scene)
        meta = {"conversations": turns, "scene": scene.to_dict()}
        image = shapes.render(scene, resolution)
        return RawSample(
            0,
            f"shapes:{self.split}:{index}",
            "instruct",
            images=[image],
            caption=text,
            template=text,
            meta=meta,
        )

    def _shapes_keyframes(self, index: int, resolution: int) -> RawSample:
        from showo.embedded import shapes

        frames = next(shapes.keyframe_sequences(self.split, 1, KEYFRAMES, resolution, start=index))
        captions = [text for _, text in frames]
        joined = "\n".join(captions)
        return RawSample(
            0,
            f"keyframes:{self.split}:{index}",
            "mixed",
            images=[image for image, _ in frames],
            caption=joined,
            template=joined,
            meta={"frame_captions": captions},
        )

    def _digits(self, index: int, resolution: int) -> RawSample:
        from showo.embedded import digits

        images, labels = digits.arrays(self.split)
        label = int(labels[index])
        name = digits.CLASS_NAMES[label]
        original = int(digits.split_indices(self.split)[index])
        return RawSample(
            0,
            f"digits:{original}",
            "class",
            images=[digits.upscale(np.asarray(images[index]), resolution)],
            caption=name,
            template=name,
            meta={"label": label, "class_name": name},
        )

    def _photos(self, index: int, resolution: int) -> RawSample:
        from showo.embedded import photos

        name = photos.names(self.split)[index]
        text = f"a photo of {name.replace('_', ' ')}"
        return RawSample(
            0, f"photos:{name}", "image_text", images=[photos.load(name)], caption=text, template=text
        )

    def _text(self, index: int, resolution: int) -> RawSample:
        document = self.documents[index]
        return RawSample(0, f"pydoc:{self.split}:{index}", "lm", caption=document)
