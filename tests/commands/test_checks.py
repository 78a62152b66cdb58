"""The argparse checks accept every documented boundary value and refuse the first value past it."""

from __future__ import annotations

import argparse

import pytest
from PIL import Image

from showo.commands import checks
from tests.data_engine.corpus import bomb_png


@pytest.mark.parametrize(
    ("check", "accepted", "refused"),
    [
        (checks.seed, ["0", str(2**64 - 1)], ["-1", str(2**64), "1.0", "0x10", ""]),
        (checks.steps, ["1", "1000"], ["0", "1001", "nan"]),
        (checks.count, ["1", "1024"], ["0", "1025", "-3"]),
        (checks.guidance, ["0", "0.0", "1000", "1e3"], ["-0.001", "1000.5", "nan", "inf", "-inf", "x"]),
        (checks.temperature, ["0", "1e-4", "100"], ["5e-5", "1e-40", "-1", "100.1", "nan"]),
        (checks.top_p, ["1", "0.01"], ["0", "1.01", "nan", "-0.5"]),
        (checks.top_k, ["1", str(2**31 - 1)], ["0", str(2**31)]),
        (checks.max_new_tokens, ["1", "4096"], ["0", "4097"]),
        (checks.port, ["0", "1", "65535"], ["-1", "65536", "http"]),
        (
            checks.device,
            ["auto", "cpu", "cuda", "cuda:0", "cuda:7"],
            ["meta", "mps", "cuda:", "CPU", "cuda:x"],
        ),
    ],
)
def test_boundaries(check, accepted, refused):
    for text in accepted:
        check(text)
    for text in refused:
        with pytest.raises(argparse.ArgumentTypeError):
            check(text)


def test_a_pasted_megabyte_is_cut_short_in_the_message():
    with pytest.raises(argparse.ArgumentTypeError) as err:
        checks.seed("7" * 1_000_000)
    assert len(str(err.value)) < 100


def test_images_within_the_limit_pass_and_bombs_do_not(tmp_path, monkeypatch):
    good = tmp_path / "good.png"
    Image.new("RGB", (8, 8)).save(good)
    assert checks.image_file(str(good)) == str(good)
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(bomb_png(15_000, 10_000))  # 150 M pixels: Pillow only warns (limit 89 M, error 179 M)
    with pytest.raises(argparse.ArgumentTypeError, match="decompression-bomb"):
        checks.image_file(str(bomb))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)  # someone switched Pillow's guard off
    with pytest.raises(argparse.ArgumentTypeError, match="decompression-bomb"):
        checks.image_file(str(bomb))


def test_output_paths(tmp_path):
    assert checks.output_file(str(tmp_path / "new" / "deeper" / "grid.png"))  # parents may be created
    assert checks.output_dir(str(tmp_path / "new-dir"))
    afile = tmp_path / "file.txt"
    afile.write_text("x")
    for check, path in [
        (checks.output_file, tmp_path),
        (checks.output_file, afile / "grid.png"),
        (checks.output_dir, afile),
        (checks.output_dir, afile / "sub"),
    ]:
        with pytest.raises(argparse.ArgumentTypeError):
            check(str(path))
