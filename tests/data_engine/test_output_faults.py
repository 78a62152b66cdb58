"""The output directory under faults: a second concurrent build is refused (partitions of one build are
not), a directory without its build record is not added to, and disk full, a size limit, a read-only
directory or a directory where a file belongs end in one line with exit 2; the rerun then resumes to
bytes identical to a clean build."""

import errno
import hashlib
import json
import os
import resource
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from data_engine.build import Builder, BuildOptions, build
from data_engine.cli import main
from data_engine.prepare import PrepareDataset, PrepareOptions, SourceFailed
from data_engine.sources import open_source

SETTINGS = {"resolution": 64, "limit": 10, "shard_size": 4, "batch_size": 4, "workers": 0, "threads": 1}


def options(out: Path, tokenizer: Path, **kw) -> BuildOptions:
    merged = {**SETTINGS, **kw}
    return BuildOptions(
        source="embedded:shapes", out=str(out), tokenizer=str(tokenizer), progress=False, **merged
    )


def argv(out: Path, tokenizer: Path, source: str = "embedded:shapes", **kw) -> list[str]:
    args = ["build", "--source", source, "--out", str(out), "--tokenizer", str(tokenizer)]
    for name, value in {**SETTINGS, **kw}.items():
        args += [f"--{name.replace('_', '-')}", str(value)]
    return [*args, "--no-progress"]


def digest(directory: Path) -> dict[str, str]:
    files = sorted(directory.glob("*.tar")) + [directory / "manifest.jsonl", directory / "dropped.jsonl"]
    return {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in files}


def one_line_error(capsys, args: list[str]) -> str:
    code = main(args)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("showo-data: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


@pytest.fixture(scope="module")
def clean(tmp_path_factory, shards_tokenizer_dir) -> dict[str, str]:
    out = tmp_path_factory.mktemp("clean") / "out"
    build(options(out, shards_tokenizer_dir))
    return digest(out)


def pause_thread(monkeypatch, name: str) -> tuple[threading.Event, threading.Event]:
    """Builds on the thread called `name` stop after taking the directory lock until `release` is set."""
    holding, release = threading.Event(), threading.Event()
    original = Builder._encode_units

    def paused(self, todo):
        if threading.current_thread().name == name:
            holding.set()
            assert release.wait(120)
        return original(self, todo)

    monkeypatch.setattr(Builder, "_encode_units", paused)
    return holding, release


def test_a_second_concurrent_build_is_refused_and_the_first_stays_consistent(
    tmp_path, shards_tokenizer_dir, capsys, monkeypatch, clean
):
    out = tmp_path / "out"
    holding, release = pause_thread(monkeypatch, "first")
    result: dict = {}
    first = threading.Thread(
        target=lambda: result.update(build(options(out, shards_tokenizer_dir))), name="first"
    )
    first.start()
    try:
        assert holding.wait(120)
        for extra in ({}, {"rank": 0, "world_size": 2}, {"resolution": 128}):
            err = one_line_error(capsys, argv(out, shards_tokenizer_dir, **extra))
            assert f"{out} is being written by another build (pid {os.getpid()})" in err
    finally:
        release.set()
        first.join(120)
    assert result["written"] == 10
    for line in (out / "manifest.jsonl").read_text().splitlines():
        entry = json.loads(line)
        assert hashlib.sha256((out / entry["shard"]).read_bytes()).hexdigest() == entry["sha256"]
    assert digest(out) == clean
    assert not list(out.rglob("*.tmp"))


def test_partitions_of_one_build_still_run_together(tmp_path, shards_tokenizer_dir, monkeypatch, clean):
    out = tmp_path / "out"
    holding, release = pause_thread(monkeypatch, "rank0")
    result: dict = {}
    rank0 = threading.Thread(
        target=lambda: result.update(build(options(out, shards_tokenizer_dir, rank=0, world_size=2))),
        name="rank0",
    )
    rank0.start()
    try:
        assert holding.wait(120)
        assert build(options(out, shards_tokenizer_dir, rank=1, world_size=2))["complete"] is False
    finally:
        release.set()
        rank0.join(120)
    assert result["written"] == 10 and result["shards"] == 3
    assert digest(out) == clean


def test_a_directory_without_its_build_record_is_not_added_to(tmp_path, shards_tokenizer_dir, capsys):
    out = tmp_path / "out"
    build(options(out, shards_tokenizer_dir))
    (out / "build.json").unlink()
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    err = one_line_error(capsys, argv(out, shards_tokenizer_dir, resolution=128))
    assert "but has no build.json" in err
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before

    other = tmp_path / "home"
    other.mkdir()
    (other / "thesis.tex").write_text("someone's work")
    err = one_line_error(capsys, argv(other, shards_tokenizer_dir))
    assert "thesis.tex" in err and sorted(p.name for p in other.iterdir()) == ["thesis.tex"]

    empty = tmp_path / "empty"
    empty.mkdir()
    assert build(options(empty, shards_tokenizer_dir))["written"] == 10


def test_disk_full_is_one_line_and_the_rerun_loses_nothing(
    tmp_path, shards_tokenizer_dir, capsys, monkeypatch, clean
):
    out = tmp_path / "out"
    real_fsync = os.fsync

    def full(fd: int) -> None:
        name = os.readlink(f"/proc/self/fd/{fd}")
        if Path(name).name.startswith("shapes-000001.") and name.endswith(".tar.tmp"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", full)
    err = one_line_error(capsys, argv(out, shards_tokenizer_dir))
    assert f"cannot write shard {out / 'shapes-000001.tar'}: No space left on device" in err
    assert not list(out.rglob("*.tmp")) and not (out / "manifest.jsonl").exists()
    finished = (out / "records" / "shapes-000000.json").read_bytes()
    monkeypatch.undo()
    assert main(argv(out, shards_tokenizer_dir)) == 0
    assert (out / "records" / "shapes-000000.json").read_bytes() == finished  # not redone
    assert digest(out) == clean


def test_file_size_limit_is_one_line_and_the_rerun_resumes(tmp_path, shards_tokenizer_dir, clean):
    """A real OS error (EFBIG under RLIMIT_FSIZE with SIGXFSZ ignored) from the command line."""
    out = tmp_path / "out"

    def limited() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (25_000, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))

    proc = subprocess.run(
        [sys.executable, "-m", "data_engine.cli", *argv(out, shards_tokenizer_dir)],
        preexec_fn=limited,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert (
        proc.stderr == f"showo-data: error: cannot write shard {out / 'shapes-000000.tar'}: File too large\n"
    )
    assert not list(out.rglob("*.tmp"))
    build(options(out, shards_tokenizer_dir))
    assert digest(out) == clean


def test_read_only_output_is_one_line_and_the_rerun_resumes(
    tmp_path, shards_tokenizer_dir, capsys, monkeypatch, clean
):
    out = tmp_path / "out"
    out.mkdir()
    if os.geteuid() != 0:
        out.chmod(0o555)
    else:  # root writes through permission bits: refuse writes under `out` where the OS would
        real_open = os.open

        def read_only(path, flags, *args, **kw):
            if Path(path).parent == out and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
                raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
            return real_open(path, flags, *args, **kw)

        monkeypatch.setattr(os, "open", read_only)
    err = one_line_error(capsys, argv(out, shards_tokenizer_dir))
    assert f"cannot write to output directory {out}: " in err
    assert ("Read-only file system" in err) or ("Permission denied" in err)
    assert list(out.iterdir()) == []
    monkeypatch.undo()
    out.chmod(0o755)
    build(options(out, shards_tokenizer_dir))
    assert digest(out) == clean


def test_a_directory_where_a_shard_belongs_is_one_line(tmp_path, shards_tokenizer_dir, capsys, clean):
    out = tmp_path / "out"
    build(options(out, shards_tokenizer_dir))
    (out / "shapes-000001.tar").unlink()
    (out / "shapes-000001.tar").mkdir()
    err = one_line_error(capsys, argv(out, shards_tokenizer_dir))
    assert f"cannot write shard {out / 'shapes-000001.tar'}: Is a directory" in err
    (out / "shapes-000001.tar").rmdir()
    build(options(out, shards_tokenizer_dir))
    assert digest(out) == clean


@pytest.mark.parametrize(
    "case, message",
    [
        ("out_is_file", "--out {tmp}/file exists and is not a directory"),
        ("out_under_file", "cannot create output directory {tmp}/file/sub: Not a directory"),
        ("workers", "--workers -1 must be in 0..256"),
        ("threads", "--threads 0 must be in 1..1024"),
        ("resolution", "--resolution 100000 must be in 1..4096"),
        ("limit", "--limit 0 must be at least 1"),
        ("name", "--name '../evil' may hold only letters"),
        ("rank_env", "environment variable RANK='abc' is not an integer"),
    ],
)
def test_bad_output_and_numbers_are_one_line(
    tmp_path, shards_tokenizer_dir, capsys, monkeypatch, case, message
):
    (tmp_path / "file").write_text("not a directory")
    out = tmp_path / "out"
    extra: dict = {}
    if case == "out_is_file":
        out = tmp_path / "file"
    elif case == "out_under_file":
        out = tmp_path / "file" / "sub"
    elif case == "rank_env":
        monkeypatch.setenv("RANK", "abc")
    elif case == "resolution":  # a missing source stops the build should the check be lost (no huge images)
        extra = {"resolution": 100000, "source": f"pairs:{tmp_path / 'missing'}"}
    else:
        extra = {case: {"workers": -1, "threads": 0, "limit": 0, "name": "../evil"}[case]}
    err = one_line_error(capsys, argv(out, shards_tokenizer_dir, **extra))
    assert message.format(tmp=tmp_path) in err
    assert not (tmp_path / "evil-000000.tar").exists()
    assert (tmp_path / "file").read_text() == "not a directory"


def test_an_os_error_nobody_named_is_still_one_line(tmp_path, shards_tokenizer_dir, capsys, monkeypatch):
    def denied(self):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), "/somewhere/file")

    monkeypatch.setattr(Builder, "run", denied)
    err = one_line_error(capsys, argv(tmp_path / "out", shards_tokenizer_dir))
    assert "/somewhere/file" in err and "Permission denied" in err


def test_an_index_file_lost_mid_build_stops_the_workers_with_one_line(tmp_path):
    index = tmp_path.resolve() / "d.jsonl"
    index.write_text(json.dumps({"image": "a.png", "caption": "x"}) + "\n")
    source = open_source(f"jsonl:{index}")
    index.unlink()
    items = list(PrepareDataset(source, source.units(10), PrepareOptions(64)))
    assert items == [SourceFailed(f"cannot read source {index}: No such file or directory")]
