"""`showo-data` from the command line: bad input is one line and exit 2; inspect and stats read shards."""

import io
import json
import tarfile

import numpy as np
import pytest
import torch
from PIL import Image

from data_engine.cli import main
from showo.sampling.images import to_pil
from showo.tokenizer import load_image_tokenizer


def cli(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--source", "pairs:/no/such/dir"], "pairs source /no/such/dir is not a directory"),
        (["--source", "video:/x"], "unknown source kind 'video'"),
        (["--source", "embedded:shapes", "--tokenizer", "/no/such/tokenizer"], "image tokenizer not found"),
        (["--source", "embedded:shapes"], "--tokenizer PATH is required"),
        (["--source", "embedded:shapes", "--recaptioner", "magic"], "unknown recaptioner 'magic'"),
        (["--source", "embedded:shapes", "--max-pixels", str(10**12)], "--max-pixels must be in"),
        (
            ["--source", "embedded:shapes", "--rank", "2", "--world-size", "2"],
            "rank 2 is not within world size 2",
        ),
    ],
)
def test_bad_build_input_is_one_line_and_exit_2(capsys, tmp_path, shards_tokenizer_dir, argv, message):
    if "--tokenizer" not in argv and "required" not in message:
        argv = [*argv, "--tokenizer", str(shards_tokenizer_dir)]
    code, _, err = cli(capsys, "build", "--out", str(tmp_path / "out"), "--no-progress", *argv)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("showo-data: error: ") and message in err


def test_empty_source_is_an_error(capsys, tmp_path, shards_tokenizer_dir):
    (tmp_path / "empty").mkdir()
    argv = ["build", "--source", f"pairs:{tmp_path / 'empty'}", "--out", str(tmp_path / "o"), "--tokenizer"]
    code, _, err = cli(capsys, *argv, str(shards_tokenizer_dir))
    assert code == 2 and "holds no inputs" in err


def test_usage_errors_exit_2(capsys):
    assert main(["build", "--out", "x"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("showo-data: error: build: ") and "--source" in err and err.count("\n") == 1


def test_build_then_inspect_decodes_with_the_manifest_tokenizer(capsys, tmp_path, shards_tokenizer_dir):
    out = tmp_path / "out"
    code, stdout, _ = cli(
        capsys, "build", "--source", "embedded:shapes", "--limit", "6", "--out", str(out), "--resolution", "64",
        "--tokenizer", str(shards_tokenizer_dir), "--workers", "0", "--threads", "1", "--no-progress",
    )  # fmt: skip
    assert code == 0 and json.loads(stdout)["written"] == 6
    grid = tmp_path / "grid.png"
    code, stdout, _ = cli(capsys, "inspect", str(out), "--grid", str(grid), "--count", "3")
    assert code == 0
    rows = [json.loads(line) for line in stdout.splitlines()]
    assert [r["key"] for r in rows] == [
        "shapes-000000-000000",
        "shapes-000000-000001",
        "shapes-000000-000002",
    ]
    picture = Image.open(grid)
    assert picture.size == (3 * 64 + 2 * 2, 64)
    with tarfile.open(out / "shapes-000000.tar") as tar:
        codes = np.load(io.BytesIO(tar.extractfile("shapes-000000-000001.codes.npy").read()))
    tokenizer = load_image_tokenizer(shards_tokenizer_dir)
    (expected,) = to_pil(tokenizer.decode(torch.from_numpy(codes.astype(np.int64))[None], grid=(16, 16)))
    tile = picture.crop((66, 0, 130, 64))
    assert np.array_equal(np.asarray(tile), np.asarray(expected))


def test_inspect_refuses_another_tokenizer(capsys, tmp_path, shapes_shards):
    from tests.fixtures.tokenizer import build_tiny_image_tokenizer

    other = build_tiny_image_tokenizer(seed=1).save_pretrained(tmp_path / "other")
    code, _, err = cli(
        capsys, "inspect", str(shapes_shards), "--grid", str(tmp_path / "g.png"), "--tokenizer", str(other)
    )
    assert code == 2 and "but the shards were encoded with" in err


def test_stats_counts_match_an_independent_read(capsys, shapes_shards):
    code, stdout, _ = cli(capsys, "stats", str(shapes_shards), "--verify")
    assert code == 0
    stats = json.loads(stdout)
    used, samples = set(), 0
    for shard in sorted(shapes_shards.glob("*.tar")):
        with tarfile.open(shard) as tar:
            for member in tar:
                if member.name.endswith(".codes.npy"):
                    samples += 1
                    used.update(np.load(io.BytesIO(tar.extractfile(member).read())).tolist())
    assert stats["samples"] == samples == 48
    assert stats["codes"]["used"] == len(used)
    assert stats["tasks"] == {"image_text": 48}
    assert stats["report"]["written"] == 48


def test_stats_on_a_missing_directory(capsys, tmp_path):
    code, _, err = cli(capsys, "stats", str(tmp_path / "nope"))
    assert code == 2 and "does not exist" in err
