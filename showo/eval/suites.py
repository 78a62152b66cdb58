"""`run_suite(ckpt, name, out)`: one pinned evaluation suite on one model, settings recorded with scores.

Users could not reproduce published numbers because steps, guidance, temperature, seeds and sample
counts were not written down; every result here carries all of them, the prompt-set digest and the
image tokenizer's identity. Suites: geneval-mini, digits (generation, judged by the shapes detector and
the digits classifier), pope-mini, caption-mini (understanding) and tokenizer (PSNR / SSIM on held-out
photos and shapes). `ckpt` is an exported model directory (`showo export`), whose `image_tokenizer/`
is used unless another is given; the tokenizer suite also takes a bare tokenizer directory.
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from showo.device import resolve_device
from showo.embedded import digits, photos, shapes
from showo.errors import ShowoError
from showo.eval import caption_mini, geneval_mini, pope_mini
from showo.eval.digits_classifier import default_classifier
from showo.eval.reconstruction import code_statistics, pair_scores, reconstruction_scores, round_trip
from showo.eval.shapes_detector import default_detector, matches_scene
from showo.sampling.pipeline import IMAGE_TOKENIZER_DIR, Pipeline, load_pipeline

SUITES: tuple[str, ...] = ("geneval-mini", "digits", "pope-mini", "caption-mini", "tokenizer")
__all__ = ["IMAGE_TOKENIZER_DIR", "SUITES", "SuiteSettings", "load", "run_suite"]


@dataclass
class SuiteSettings:
    """Everything that changes a score; written into every result."""

    steps: int = 12
    guidance: float = 1.5
    temperature: float = 1.0
    schedule: str = "cosine"
    seed: int = 0
    batch_size: int = 16
    samples_per_prompt: int = 4
    per_tag: int = geneval_mini.PER_TAG
    samples_per_class: int = 10
    pope_images: int = pope_mini.N_IMAGES
    caption_images: int = caption_mini.N_IMAGES
    answer_tokens: int = 6
    caption_tokens: int = 32
    heldout_shapes: int = 32
    resolution: int | None = None
    # Understanding prompt form (`Prompter.mmu_gen`): "mmu", the official inference prompt, or "instruct",
    # the form instruction tuning teaches.
    prompt_template: str = "mmu"


def load(ckpt: str | Path, image_tokenizer: str | Path | None = None, need_model: bool = True) -> Pipeline:
    """The model (unless `need_model` is False), its prompter, the image tokenizer and the image size."""
    return load_pipeline(ckpt, image_tokenizer, need_model=need_model)


def _batches(items: Sequence, size: int) -> list[Sequence]:
    return [items[i : i + size] for i in range(0, len(items), size)]


@torch.no_grad()
def generate_images(loaded: Pipeline, prompts: Sequence[str], settings: SuiteSettings) -> list[Image.Image]:
    """Text-to-image for each prompt with the checkpoint's own sampler, one seeded generator for the run."""
    from showo.sampling.images import to_pil

    objective = loaded.objective
    options = objective.options_from(asdict(settings))
    generator = torch.Generator(device=loaded.device).manual_seed(settings.seed)
    out: list[Image.Image] = []
    for batch in tqdm(_batches(list(prompts), settings.batch_size), desc="generate", leave=False):
        codes = objective.generate(loaded.model, loaded.prompter, batch, options, generator)
        out.extend(to_pil(loaded.decode_images(codes)))
    return out


def encode_images(loaded: Pipeline, images: Sequence[Image.Image], batch_size: int) -> torch.Tensor:
    """What the model reads for `images` at its resolution: unified image ids [n, N] (or scaled latents)."""
    return loaded.encode_images(images, batch_size)


@torch.no_grad()
def answer(
    loaded: Pipeline,
    image_ids: torch.Tensor,
    questions: Sequence[str],
    max_new_tokens: int,
    batch_size: int,
    template: str,
) -> list[str]:
    """Greedy answers to one question per image (unified ids from `encode_images`)."""
    from showo.sampling import understand

    out: list[str] = []
    for start in tqdm(range(0, len(questions), batch_size), desc="answer", leave=False):
        out.extend(
            understand.decode(
                loaded.model,
                loaded.prompter,
                image_ids[start : start + batch_size],
                list(questions[start : start + batch_size]),
                max_new_tokens=max_new_tokens,
                template=template,
            )
        )
    return out


def _geneval(loaded: Pipeline, settings: SuiteSettings) -> tuple[dict, list[Image.Image]]:
    specs = [
        s for s in geneval_mini.prompt_specs(settings.per_tag) for _ in range(settings.samples_per_prompt)
    ]
    images = generate_images(loaded, [s.prompt for s in specs], settings)
    return geneval_mini.score(images, specs), images


def _digits(loaded: Pipeline, settings: SuiteSettings) -> tuple[dict, list[Image.Image]]:
    labels = [label for label in range(10) for _ in range(settings.samples_per_class)]
    images = generate_images(loaded, [digits.CLASS_NAMES[label] for label in labels], settings)
    predicted = default_classifier().predict(images)
    per_class = {
        digits.CLASS_NAMES[c]: float(
            (predicted[[i for i, label in enumerate(labels) if label == c]] == c).mean()
        )
        for c in range(10)
    }
    accuracy = float((predicted == np.asarray(labels)).mean())
    return {"accuracy": accuracy, "per_class": per_class, "n": len(labels)}, images


def _pope(loaded: Pipeline, settings: SuiteSettings) -> dict:
    splits = {split: pope_mini.questions(split, settings.pope_images) for split in pope_mini.SPLITS}
    indices = sorted({q.image_index for qs in splits.values() for q in qs})
    images = [pope_mini.image(i, loaded.resolution) for i in indices]
    ids = encode_images(loaded, images, settings.batch_size)  # each image once, shared by the splits
    row = {index: n for n, index in enumerate(indices)}
    results = {}
    for split, qs in splits.items():
        picked = ids[torch.tensor([row[q.image_index] for q in qs], device=ids.device)]
        answers = answer(
            loaded,
            picked,
            [q.question for q in qs],
            settings.answer_tokens,
            settings.batch_size,
            settings.prompt_template,
        )
        results[split] = pope_mini.score(answers, qs)
        results[split]["examples"] = [[q.question, a] for q, a in list(zip(qs, answers))[:5]]
    results["accuracy"] = sum(results[s]["accuracy"] for s in pope_mini.SPLITS) / len(pope_mini.SPLITS)
    results["f1"] = sum(results[s]["f1"] for s in pope_mini.SPLITS) / len(pope_mini.SPLITS)
    return results


def _caption(loaded: Pipeline, settings: SuiteSettings) -> dict:
    items = caption_mini.items(settings.caption_images)
    ids = encode_images(
        loaded, [caption_mini.image(item, loaded.resolution) for item in items], settings.batch_size
    )
    captions = answer(
        loaded,
        ids,
        [caption_mini.PROMPT] * len(items),
        settings.caption_tokens,
        settings.batch_size,
        settings.prompt_template,
    )
    result = caption_mini.score(captions, [item.scene for item in items])
    result["examples"] = [[shapes.caption(i.scene), c] for i, c in list(zip(items, captions))[:8]]
    return result


def _tokenizer(loaded: Pipeline, settings: SuiteSettings) -> dict:
    from showo.sampling.images import encode_images as encode_codes

    resolution = settings.resolution or loaded.resolution or 64
    scenes = list(shapes.scenes("heldout", settings.heldout_shapes))
    held = [(f"shapes-{i}", shapes.render(s, resolution)) for i, s in enumerate(scenes)]
    trips = {name: round_trip(loaded.image_tokenizer, image, resolution) for name, image in held}
    detector = default_detector()
    read = [
        matches_scene(detector.detect(rebuilt), scene) for (_, rebuilt), scene in zip(trips.values(), scenes)
    ]
    return {
        "photos": reconstruction_scores(loaded.image_tokenizer, photos.photos("heldout"), resolution),
        "shapes": pair_scores(trips, resolution)
        # the share of round trips the geneval-mini detector reads exactly: that suite's ceiling
        | {"detector_exact": float(np.mean(read))}
        | code_statistics(encode_codes(loaded.image_tokenizer, [image for _, image in held], resolution)),
    }


def run_suite(
    ckpt: str | Path,
    name: str,
    out: str | Path | None = None,
    settings: SuiteSettings | None = None,
    image_tokenizer: str | Path | None = None,
    sheet: str | Path | None = None,
) -> dict:
    """Run suite `name` on `ckpt`; write the result JSON to `out` and generations to `sheet` (PNG) if given."""
    if name not in SUITES:
        raise ShowoError(f"unknown eval suite {name!r}; expected one of {', '.join(SUITES)}")
    settings = settings or SuiteSettings()
    torch.manual_seed(settings.seed)
    started = time.time()
    loaded = load(ckpt, image_tokenizer, need_model=name != "tokenizer")
    if settings.resolution and loaded.model is not None and settings.resolution != loaded.resolution:
        raise ShowoError(f"resolution {settings.resolution} does not match the model's {loaded.resolution}")
    images: list[Image.Image] = []
    if name == "geneval-mini":
        scores, images = _geneval(loaded, settings)
    elif name == "digits":
        scores, images = _digits(loaded, settings)
    elif name == "pope-mini":
        scores = _pope(loaded, settings)
    elif name == "caption-mini":
        scores = _caption(loaded, settings)
    else:
        scores = _tokenizer(loaded, settings)
    result = {
        "suite": name,
        "ckpt": str(ckpt),
        "settings": asdict(settings) | {"resolution": settings.resolution or loaded.resolution or 64},
        "image_tokenizer": loaded.image_tokenizer.identity(),
        **(
            {
                "objective": loaded.objective.to_dict(),
                "sampler": loaded.objective.sampler,
                "sampler_options": asdict(loaded.objective.options_from(asdict(settings))),
            }
            if loaded.model is not None
            else {}
        ),
        "scores": scores,
        "seconds": round(time.time() - started, 2),
        "machine": f"{platform.machine()} {platform.system()} torch {torch.__version__} {resolve_device().type}",
    }
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(result, indent=2))
    if sheet is not None and images:
        from showo.sampling.images import make_grid

        Path(sheet).parent.mkdir(parents=True, exist_ok=True)
        per_prompt = settings.samples_per_prompt  # geneval-mini: whole prompts per row, about 8 images
        ncol = per_prompt * max(1, 8 // per_prompt) if name == "geneval-mini" else settings.samples_per_class
        make_grid(images, ncol=ncol).save(sheet, format="PNG")
    return result
