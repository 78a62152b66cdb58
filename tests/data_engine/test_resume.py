"""Crash safety: SIGKILL the CLI build at several points (mid-shard, after a temporary tar, after the
rename but before its record), rerun each time, and the result is byte-identical to a clean run."""

import hashlib
import os
import signal
import subprocess
import sys

from data_engine.build import BuildOptions, build

LIMIT, SHARD_SIZE = 14, 4


def digest(directory) -> dict[str, str]:
    files = sorted(directory.glob("*.tar")) + [directory / "manifest.jsonl", directory / "dropped.jsonl"]
    return {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in files}


def test_sigkill_at_several_points_then_rerun_is_byte_identical(tmp_path, shards_tokenizer_dir):
    common = dict(resolution=64, limit=LIMIT, shard_size=SHARD_SIZE, batch_size=3, progress=False, threads=1)
    build(
        BuildOptions(
            source="embedded:shapes",
            out=str(tmp_path / "clean"),
            tokenizer=str(shards_tokenizer_dir),
            workers=0,
            **common,
        )
    )

    out = tmp_path / "crashed"
    argv = [
        sys.executable,
        "-m",
        "data_engine.cli",
        "build",
        "--source",
        "embedded:shapes",
        "--out",
        str(out),
    ]
    argv += ["--tokenizer", str(shards_tokenizer_dir), "--resolution", "64", "--limit", str(LIMIT)]
    argv += ["--shard-size", str(SHARD_SIZE), "--batch-size", "3", "--no-progress", "--threads", "1"]
    kills = [("input:6", "1"), ("shard_tmp_written:1", "0"), ("shard_renamed:1", "1")]
    for point, workers in kills:
        env = {**os.environ, "SHOWO_DATA_FAILPOINT": point}
        proc = subprocess.run(
            [*argv, "--workers", workers], env=env, capture_output=True, text=True, timeout=300
        )
        assert proc.returncode == -signal.SIGKILL, (point, proc.stderr[-2000:])
        assert not (out / "manifest.jsonl").exists()
        if point.startswith("shard_tmp_written"):
            assert list(out.glob("*.tar.tmp")), "the kill should leave a temporary tar behind"
        if point.startswith("shard_renamed"):
            records = {p.stem for p in (out / "records").glob("*.json")}
            assert {p.stem for p in out.glob("*.tar")} - records, "the kill should leave a tar without record"
    build(
        BuildOptions(
            source="embedded:shapes", out=str(out), tokenizer=str(shards_tokenizer_dir), workers=1, **common
        )
    )

    assert digest(out) == digest(tmp_path / "clean")
    assert len(list(out.glob("*.tar"))) == -(-LIMIT // SHARD_SIZE)
    assert not list(out.glob("*.tmp"))
