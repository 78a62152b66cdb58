"""The suite runner end to end on a tiny untrained model: settings recorded, scores well formed, seeded
generations reproducible; reconstruction metrics against a hand computation."""

import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.stats import entropy

from showo.embedded import photos, shapes
from showo.errors import ShowoError
from showo.eval import suites
from showo.eval.reconstruction import code_statistics, psnr, reconstruction_scores, round_trip, ssim
from tests.fixtures.tokenizer import build_tiny_image_tokenizer


@pytest.fixture(scope="module")
def tiny_image_tokenizer():
    return build_tiny_image_tokenizer(ch_mult=[1, 1, 1], decoder_ch_mult=[1, 1, 1], z_channels=8)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tiny_showo, tiny_image_tokenizer):
    out = tmp_path_factory.mktemp("eval_model")
    tiny_showo.save_pretrained(out)
    tiny_image_tokenizer.save_pretrained(out / suites.IMAGE_TOKENIZER_DIR)
    return out


TINY = suites.SuiteSettings(
    steps=2,
    per_tag=1,
    samples_per_prompt=1,
    samples_per_class=1,
    pope_images=1,
    caption_images=2,
    heldout_shapes=2,
    answer_tokens=2,
    caption_tokens=3,
)


def test_generation_suites_record_settings_and_reproduce(model_dir, tmp_path):
    out = tmp_path / "geneval.json"
    result = suites.run_suite(model_dir, "geneval-mini", out, TINY, sheet=tmp_path / "sheet.png")
    assert json.loads(out.read_text()) == result
    assert result["settings"]["steps"] == 2 and result["settings"]["guidance"] == TINY.guidance
    assert result["settings"]["seed"] == 0 and result["settings"]["resolution"] == 64
    assert result["image_tokenizer"].startswith("showo-magvitv2-lfq-")
    scores = result["scores"]
    assert set(scores["tags"]) == set(suites.geneval_mini.TAGS) and len(scores["images"]) == 6
    assert 0.0 <= scores["overall"] <= 1.0
    assert (tmp_path / "sheet.png").is_file()
    loaded = suites.load(model_dir)
    first = suites.generate_images(loaded, ["a red circle", "two blue squares"], TINY)
    again = suites.generate_images(loaded, ["a red circle", "two blue squares"], TINY)
    assert [im.tobytes() for im in first] == [im.tobytes() for im in again]
    assert first[0].size == (64, 64)
    digits = suites.run_suite(model_dir, "digits", None, TINY)["scores"]
    assert digits["n"] == 10 and set(digits["per_class"]) == set(suites.digits.CLASS_NAMES)


def test_understanding_suites_score_answers(model_dir):
    pope = suites.run_suite(model_dir, "pope-mini", None, TINY)["scores"]
    for split in suites.pope_mini.SPLITS:
        assert 0.0 <= pope[split]["accuracy"] <= 1.0 and pope[split]["n"] >= 2
    caption = suites.run_suite(model_dir, "caption-mini", None, TINY)["scores"]
    assert caption["n"] == 2 and 0.0 <= caption["recall"] <= 1.0


def test_tokenizer_suite_and_metrics(model_dir, tiny_image_tokenizer):
    result = suites.run_suite(model_dir / suites.IMAGE_TOKENIZER_DIR, "tokenizer", None, TINY)
    assert set(result["scores"]["photos"]["images"]) == set(photos.HELDOUT)
    image = shapes.render(shapes.sample_scene(0), 64)
    original, rebuilt = round_trip(tiny_image_tokenizer, image, 64)
    assert original.tobytes() == image.tobytes()
    a, b = np.asarray(original, np.float64), np.asarray(rebuilt, np.float64)
    assert psnr(original, rebuilt) == pytest.approx(10 * math.log10(255**2 / ((a - b) ** 2).mean()))
    assert ssim(original, original) == pytest.approx(1.0) and ssim(original, rebuilt) < 0.99
    scores = reconstruction_scores(tiny_image_tokenizer, [("s", image)], 64)
    assert scores["psnr"] == pytest.approx(psnr(original, rebuilt))
    with pytest.raises(ShowoError):
        suites.run_suite(model_dir, "mmmu")
    with pytest.raises(ShowoError):
        suites.run_suite(model_dir / "missing", "digits")


def test_tokenizer_suite_reports_the_detector_ceiling(model_dir, monkeypatch):
    """detector_exact: a lossless round trip is read (nearly) always, a blank one never."""
    tokenizer_dir = model_dir / suites.IMAGE_TOKENIZER_DIR
    settings = replace(TINY, heldout_shapes=20)
    monkeypatch.setattr(suites, "round_trip", lambda tok, image, res: (image, image))
    assert (
        suites.run_suite(tokenizer_dir, "tokenizer", None, settings)["scores"]["shapes"]["detector_exact"]
        >= 0.95
    )
    blank = Image.new("RGB", (64, 64), shapes.BACKGROUND)
    monkeypatch.setattr(suites, "round_trip", lambda tok, image, res: (image, blank))
    assert (
        suites.run_suite(tokenizer_dir, "tokenizer", None, settings)["scores"]["shapes"]["detector_exact"]
        == 0.0
    )


def test_code_statistics_match_scipy_and_the_suite_reports_them(model_dir):
    codes = torch.tensor([[3, 3, 3, 7], [7, 1, 3, 900]])
    stats = code_statistics(codes)
    assert stats["distinct_codes"] == 4
    assert stats["code_entropy_bits"] == pytest.approx(entropy([4, 2, 1, 1], base=2))
    assert code_statistics(torch.full((2, 16), 5))["code_entropy_bits"] == 0.0
    with pytest.raises(ShowoError):
        code_statistics(torch.zeros(0, dtype=torch.long))
    shapes_scores = suites.run_suite(model_dir / suites.IMAGE_TOKENIZER_DIR, "tokenizer", None, TINY)[
        "scores"
    ]["shapes"]
    assert 0.0 <= shapes_scores["code_entropy_bits"] <= math.log2(shapes_scores["distinct_codes"]) + 1e-9
