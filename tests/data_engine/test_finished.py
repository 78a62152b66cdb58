"""A rerun of a finished build is answered from `finished.json` without torch (issue 19: resume of a
finished build in well under 2 s); anything that could change the output sends it to the full build."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from data_engine.build import BuildOptions, build
from data_engine.finished import FINISHED_FILE, finished_report
from showo.errors import ShowoError

REPO = Path(__file__).resolve().parents[2]


def options(out, tokenizer, **kw) -> BuildOptions:
    values = {
        "source": "embedded:shapes",
        "limit": 12,
        "shard_size": 4,
        "resolution": 64,
        "workers": 0,
        "batch_size": 3,
        "progress": False,
        "threads": 1,
        **kw,
    }
    return BuildOptions(out=str(out), tokenizer=str(tokenizer), **values)


@pytest.fixture
def finished(tmp_path, shards_tokenizer_dir) -> tuple[Path, Path, dict]:
    """A finished build with a tokenizer directory of its own (some tests change its files)."""
    tokenizer = tmp_path / "tokenizer"
    shutil.copytree(shards_tokenizer_dir, tokenizer)
    out = tmp_path / "out"
    report = build(options(out, tokenizer))
    return out, tokenizer, report


def test_the_cli_answers_a_finished_build_without_importing_torch(finished):
    out, tokenizer, report = finished
    flags = ["--source", "embedded:shapes", "--limit", "12", "--shard-size", "4", "--resolution", "64"]
    flags += ["--batch-size", "3", "--out", str(out), "--tokenizer", str(tokenizer), "--no-progress"]
    script = (
        "import sys\nfrom data_engine.cli import main\n"
        f"assert main(['build', *{flags!r}]) == 0\nprint('torch' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, check=True
    )
    printed, torch_loaded = done.stdout.splitlines()
    assert json.loads(printed) == report == json.loads((out / "report.json").read_text())
    assert torch_loaded == "False"


def test_a_finished_build_is_answered_with_its_report(finished):
    out, tokenizer, report = finished
    assert finished_report(options(out, tokenizer)) == report
    # the flags that do not shape the output do not matter
    assert finished_report(options(out, tokenizer, workers=2, threads=2, progress=True)) == report


@pytest.mark.parametrize(
    "change",
    [
        {"dedup": "none"},
        {"batch_size": 4},
        {"limit": 11},
        {"resolution": 32},
        {"recaptioner": "template"},
        {"device": "cpu"},
        {"verify": True},
    ],
)
def test_other_options_go_to_the_full_build(finished, change):
    out, tokenizer, _ = finished
    assert finished_report(options(out, tokenizer, **change)) is None


def edit_tokenizer(out, tokenizer):
    config = tokenizer / "config.json"
    config.write_text(config.read_text() + "\n")


def drop_shard(out, tokenizer):
    (out / "shapes-000001.tar").unlink()


def drop_record(out, tokenizer):
    (out / "records" / "shapes-000002.json").unlink()


def truncate_shard(out, tokenizer):
    shard = out / "shapes-000000.tar"
    shard.write_bytes(shard.read_bytes()[:-512])


def edit_report(out, tokenizer):
    (out / "report.json").write_text("{}")


def drop_manifest(out, tokenizer):
    (out / "manifest.jsonl").unlink()


def traversal_name(out, tokenizer):
    record = json.loads((out / FINISHED_FILE).read_text())
    record["shards"] = ["../out/shapes-000000.tar"]
    (out / FINISHED_FILE).write_text(json.dumps(record))


def not_json(out, tokenizer):
    (out / FINISHED_FILE).write_bytes(b"\x80garbage")


@pytest.mark.parametrize(
    "fault",
    [
        edit_tokenizer,
        drop_shard,
        drop_record,
        truncate_shard,
        edit_report,
        drop_manifest,
        traversal_name,
        not_json,
    ],
)
def test_any_change_goes_to_the_full_build(finished, fault):
    out, tokenizer, _ = finished
    fault(out, tokenizer)
    assert finished_report(options(out, tokenizer)) is None


def test_the_full_build_repairs_and_records_again(finished):
    out, tokenizer, report = finished
    before = (out / "shapes-000001.tar").read_bytes()
    drop_shard(out, tokenizer)
    assert finished_report(options(out, tokenizer)) is None
    assert build(options(out, tokenizer))["written"] == report["written"]
    assert (out / "shapes-000001.tar").read_bytes() == before
    assert finished_report(options(out, tokenizer)) is not None


def test_the_full_build_still_refuses_a_changed_tokenizer(finished):
    out, tokenizer, _ = finished
    from tests.fixtures.model import TINY_CODEBOOK
    from tests.fixtures.tokenizer import build_tiny_image_tokenizer

    build_tiny_image_tokenizer(seed=1, z_channels=TINY_CODEBOOK.bit_length() - 1).save_pretrained(tokenizer)
    assert finished_report(options(out, tokenizer)) is None
    with pytest.raises(ShowoError, match="other settings \\(tokenizer\\)"):
        build(options(out, tokenizer))


def test_an_unfinished_partition_records_nothing(tmp_path, shards_tokenizer_dir):
    out = tmp_path / "out"
    report = build(options(out, shards_tokenizer_dir, rank=0, world_size=2))
    assert report["complete"] is False and not (out / FINISHED_FILE).exists()
    assert finished_report(options(out, shards_tokenizer_dir, rank=1, world_size=2)) is None
    build(options(out, shards_tokenizer_dir, rank=1, world_size=2))
    assert (out / FINISHED_FILE).is_file()
    assert finished_report(options(out, shards_tokenizer_dir, rank=0, world_size=2)) is not None
