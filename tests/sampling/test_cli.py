"""The four inference commands end to end on a tiny exported checkpoint, and their one-line errors."""

from pathlib import Path

import pytest
from PIL import Image

from showo.cli import main
from tests.data_engine.corpus import bomb_png


@pytest.fixture(scope="module")
def pictures(tmp_path_factory):
    root = tmp_path_factory.mktemp("pictures")
    image = Image.new("RGB", (24, 16), (200, 30, 30))
    image.paste((20, 20, 220), (12, 0, 24, 16))
    image.save(root / "image.png")
    mask = Image.new("L", (24, 16), 0)
    mask.paste(255, (12, 0, 24, 16))
    mask.save(root / "mask.png")
    Image.new("L", (10, 10), 255).save(root / "small_mask.png")
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    (root / "bomb.png").write_bytes(bomb_png())  # 40000x40000 declared: Pillow's error zone
    side = int((Image.MAX_IMAGE_PIXELS * 1.5) ** 0.5)  # Pillow only warns here; still refused
    (root / "warning_bomb.png").write_bytes(bomb_png(side, side))
    (root / "folder.png").mkdir()
    return root


def _fast(ckpt):
    return ["--ckpt", str(ckpt), "--steps", "3", "--device", "cpu"]


def test_generate_writes_a_grid(sampling_ckpt, tmp_path, capsys):
    out = tmp_path / "grid.png"
    args = ["generate", *_fast(sampling_ckpt), "--prompt", "a red circle", "--prompt", "a star", "--n", "3"]
    assert main([*args, "--out", str(out), "--batch-size", "4"]) == 0
    with Image.open(out) as grid:  # 2 rows of 3 images of 16x16 pixels with 2-pixel gaps
        assert grid.size == (3 * 16 + 2 * 2, 2 * 16 + 2)
    assert str(out) in capsys.readouterr().out


def test_generate_is_reproducible_by_seed(sampling_ckpt, tmp_path):
    paths = [tmp_path / f"{i}.png" for i in range(2)]
    for path in paths:
        assert main(["generate", *_fast(sampling_ckpt), "--prompt", "x", "--n", "2", "--out", str(path)]) == 0
    assert paths[0].read_bytes() == paths[1].read_bytes()


def test_generate_with_the_ar_sampler(ar_sampling_ckpt, tmp_path):
    out = tmp_path / "ar.png"
    args = ["generate", "--ckpt", str(ar_sampling_ckpt), "--device", "cpu", "--prompt", "x", "--n", "2"]
    assert main([*args, "--sampler", "ar", "--out", str(out)]) == 0
    with Image.open(out) as grid:
        assert grid.size == (2 * 16 + 2, 16)


def test_caption_prints_one_line_per_image(sampling_ckpt, pictures, capsys):
    args = ["caption", "--ckpt", str(sampling_ckpt), "--device", "cpu", "--max-new-tokens", "4"]
    assert main([*args, "--image", str(pictures / "image.png"), "--image", str(pictures / "image.png")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and lines[0].startswith(str(pictures / "image.png"))


def test_inpaint_and_extrapolate_write_pngs(sampling_ckpt, pictures, tmp_path):
    out = tmp_path / "inpaint.png"
    image, mask = str(pictures / "image.png"), str(pictures / "mask.png")
    assert (
        main(
            [
                "inpaint",
                *_fast(sampling_ckpt),
                "--image",
                image,
                "--mask",
                mask,
                "--prompt",
                "blue",
                "--n",
                "2",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    with Image.open(out) as grid:
        assert grid.size == (3 * 16 + 2 * 2, 16)
    out = tmp_path / "extra.png"
    args = ["extrapolate", *_fast(sampling_ckpt), "--image", image, "--prompt", "sky", "--out", str(out)]
    assert main([*args, "--direction", "left,up", "--direction", "down"]) == 0
    with Image.open(out) as picture:  # 4x4 codes -> 4x6 after left -> 6x6 after up -> 8x6 after down
        assert picture.size == (6 * 4, 8 * 4)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["generate", "--ckpt", "{missing}", "--prompt", "x"], "checkpoint directory not found"),
        (["caption", "--ckpt", "{ckpt}", "--image", "{pictures}/broken.png"], "cannot read image"),
        (["caption", "--ckpt", "{ckpt}", "--image", "{pictures}/nope.png"], "image not found"),
        (
            [
                "inpaint",
                "--ckpt",
                "{ckpt}",
                "--image",
                "{pictures}/image.png",
                "--mask",
                "{pictures}/small_mask.png",
                "--prompt",
                "x",
            ],
            "mask size 10x10 differs from image size 24x16",
        ),
        (
            [
                "extrapolate",
                "--ckpt",
                "{ckpt}",
                "--image",
                "{pictures}/image.png",
                "--direction",
                "sideways",
                "--prompt",
                "x",
            ],
            "unknown direction 'sideways'",
        ),
        (
            ["generate", "--ckpt", "{ckpt}", "--prompt", "x", "--image-tokenizer", "{missing}"],
            "image tokenizer not found",
        ),
        (["generate", "--ckpt", "{ckpt}", "--prompt", "x", "--steps", "0"], "--steps: must be at least 1"),
        (["caption", "--ckpt", "{ckpt}", "--image", "{pictures}/bomb.png"], "decompression-bomb limit"),
        (["caption", "--ckpt", "{ckpt}", "--image", "{pictures}/warning_bomb.png"], "decompression-bomb"),
        (["caption", "--ckpt", "{ckpt}", "--image", "{pictures}/folder.png"], "is a directory"),
        (
            [
                "inpaint",
                "--ckpt",
                "{ckpt}",
                "--image",
                "{pictures}/image.png",
                "--mask",
                "{pictures}/bomb.png",
                "--prompt",
                "x",
            ],
            "argument --mask: refusing",
        ),
        (["generate", "--ckpt", "{ckpt}", "--prompt", "x", "--out", "{pictures}"], "--out: "),
        (["generate", "--ckpt", "{ckpt}", "--prompt", "x", "--guidance", "nan"], "finite"),
        (["generate", "--ckpt", "{ckpt}", "--prompt", "x", "--seed", "18446744073709551616"], "at most"),
        (["generate", "--ckpt", "{ckpt}", "--prompt", "x", "--n", "1025"], "--n: must be at most 1024"),
        (["caption", "--ckpt", "{ckpt}", "--image", "{pictures}/image.png", "--top-p", "0"], "(0, 1]"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(sampling_ckpt, pictures, tmp_path, capsys, argv, message):
    fill = dict(ckpt=sampling_ckpt, pictures=pictures, missing=tmp_path / "missing")
    assert main([a.format(**fill) for a in argv] + ["--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("showo: error: ") and message in err


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full to simulate a full disk")
def test_a_full_disk_at_the_final_write_is_one_line(sampling_ckpt, capsys):
    """/dev/full refuses every write with ENOSPC: the sampled grid cannot be saved."""
    argv = ["generate", *_fast(sampling_ckpt), "--prompt", "x", "--n", "1", "--out", "/dev/full"]
    assert main(argv) == 2
    err = capsys.readouterr().err  # the progress bar comes first: the failure is at the end
    assert err.endswith("\nshowo: error: cannot write --out /dev/full: No space left on device\n")
    assert "Traceback" not in err


def test_the_seed_takes_all_64_bits(sampling_ckpt, tmp_path):
    """The largest allowed seed reaches torch.Generator (whose range is exactly 64 bits) and runs."""
    out = tmp_path / "seed.png"
    argv = ["generate", *_fast(sampling_ckpt), "--prompt", "x", "--n", "1", "--out", str(out)]
    assert main([*argv, "--seed", str(2**64 - 1)]) == 0 and out.is_file()
