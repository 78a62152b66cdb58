"""Builds whose cost does not grow with what is already done (issue 19): a resume reads no finished
shard (asserted by counting every open and hash of one), `--verify` re-hashes them; workers x threads
never exceed the cores the process may use; the batch size does not change the codes."""

import builtins
import hashlib
import io
import json

import pytest
import torch

from data_engine import resources, writer
from data_engine.build import BuildOptions, build
from data_engine.cli import main

LIMIT, SHARD_SIZE = 12, 4


def run(out, tokenizer, **kw) -> dict:
    options = {
        "source": "embedded:shapes",
        "limit": LIMIT,
        "shard_size": SHARD_SIZE,
        "resolution": 64,
        "workers": 0,
        "batch_size": 3,
        "progress": False,
        "threads": 1,
        **kw,
    }
    return build(BuildOptions(out=str(out), tokenizer=str(tokenizer), **options))


def digests(directory) -> dict[str, str]:
    files = [*sorted(directory.glob("*.tar")), directory / "manifest.jsonl", directory / "dropped.jsonl"]
    return {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in files}


@pytest.fixture
def tar_reads(monkeypatch) -> list[str]:
    """Names of the finished shards (`*.tar`, not temporaries) that anything opens for reading or hashes."""
    seen: list[str] = []
    real_open, real_hash = builtins.open, writer.sha256_file

    def counting_open(file, mode="r", *args, **kw):
        if str(file).endswith(".tar") and "r" in mode:
            seen.append(str(file).rsplit("/", 1)[-1])
        return real_open(file, mode, *args, **kw)

    def counting_hash(path):
        seen.append(path.name)
        return real_hash(path)

    monkeypatch.setattr(builtins, "open", counting_open)
    monkeypatch.setattr(io, "open", counting_open)
    monkeypatch.setattr(writer, "sha256_file", counting_hash)
    return seen


def test_resume_reads_no_finished_shard_and_is_byte_identical(tmp_path, shards_tokenizer_dir, tar_reads):
    run(tmp_path / "clean", shards_tokenizer_dir)
    clean = digests(tmp_path / "clean")
    out = tmp_path / "out"
    run(out, shards_tokenizer_dir)
    lost = out / "shapes-000001.tar"
    lost.unlink()  # a partial build: shard 1 must be redone, shards 0 and 2 are finished
    tar_reads.clear()
    report = run(out, shards_tokenizer_dir)
    assert tar_reads == []  # neither hashed nor opened
    assert digests(out) == clean and report["shards"] == 3

    tar_reads.clear()
    run(out, shards_tokenizer_dir, verify=True)
    assert set(tar_reads) == {name for name in clean if name.endswith(".tar")}  # each hashed


def test_verify_catches_a_same_size_change_that_the_size_check_cannot(tmp_path, shards_tokenizer_dir):
    run(tmp_path / "out", shards_tokenizer_dir)
    shard = tmp_path / "out" / "shapes-000002.tar"
    original = shard.read_bytes()
    flipped = bytearray(original)
    flipped[700] ^= 0xFF
    shard.write_bytes(bytes(flipped))
    run(tmp_path / "out", shards_tokenizer_dir)
    assert shard.read_bytes() == bytes(flipped)  # the documented cost of not re-reading: size only
    run(tmp_path / "out", shards_tokenizer_dir, verify=True)
    assert shard.read_bytes() == original


def test_written_sha256_and_size_equal_a_hash_of_the_file(tmp_path, shards_tokenizer_dir):
    run(tmp_path / "out", shards_tokenizer_dir)
    for line in (tmp_path / "out" / "manifest.jsonl").read_text().splitlines():
        entry = json.loads(line)
        data = (tmp_path / "out" / entry["shard"]).read_bytes()
        assert (entry["sha256"], entry["bytes"]) == (hashlib.sha256(data).hexdigest(), len(data))


CPU = torch.device("cpu")


@pytest.mark.parametrize(
    "workers, threads, device, cores, expected",
    [
        (None, None, CPU, 2, (2, 1, False)),
        (None, None, CPU, 1, (1, 1, False)),
        (None, None, CPU, 16, (2, 8, False)),
        (None, None, torch.device("cuda"), 16, (16, 1, False)),
        (1, None, CPU, 2, (1, 1, False)),
        (None, 2, CPU, 2, (1, 2, False)),
        (2, 2, CPU, 2, (1, 2, True)),
        (4, None, CPU, 2, (2, 1, True)),
        (0, 8, CPU, 2, (0, 2, True)),
        (3, 3, CPU, 1, (1, 1, True)),
    ],
)
def test_workers_times_threads_fit_the_cores(workers, threads, device, cores, expected):
    got_workers, got_threads, note = resources.plan(workers, threads, device, cores)
    assert (got_workers, got_threads, note is not None) == expected
    assert max(1, got_workers) * got_threads <= cores


def test_partitions_on_one_node_share_its_cores(monkeypatch):
    monkeypatch.setattr(resources.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    chosen, _ = resources.choose(None, None, CPU, 8, False, 32)
    assert (chosen["cores"], chosen["cores_on_node"], chosen["partitions_on_node"]) == (2, 4, 2)
    monkeypatch.delenv("LOCAL_WORLD_SIZE")
    assert resources.choose(None, None, CPU, 4, True, 32)[0]["cores"] == 1  # --world-size by hand
    assert resources.choose(None, None, CPU, 4, False, 32)[0]["cores"] == 4  # WORLD_SIZE: other nodes
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "x")
    with pytest.raises(Exception, match="LOCAL_WORLD_SIZE"):
        resources.choose(None, None, CPU, 4, False, 32)


def test_oversubscription_is_clamped_with_a_note_and_recorded(
    tmp_path, shards_tokenizer_dir, monkeypatch, capsys
):
    monkeypatch.setattr(resources.os, "sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    before = torch.get_num_threads()
    report = run(tmp_path / "out", shards_tokenizer_dir, workers=3, threads=2, limit=4)
    err = capsys.readouterr().err
    assert "showo-data: note: --workers 3 x --threads 2 exceeds the 2 cores" in err and "using 1 x 2" in err
    (chosen,) = report["resources"]
    assert (chosen["workers"], chosen["threads"], chosen["cores"]) == (1, 2, 2)
    assert torch.get_num_threads() == before


def test_batch_size_does_not_change_the_shards(tmp_path, shards_tokenizer_dir):
    run(tmp_path / "b1", shards_tokenizer_dir, batch_size=1)
    run(tmp_path / "b5", shards_tokenizer_dir, batch_size=5)
    one, five = digests(tmp_path / "b1"), digests(tmp_path / "b5")
    assert {k: v for k, v in one.items() if k.endswith(".tar")} == {
        k: v for k, v in five.items() if k.endswith(".tar")
    }


def test_cuda_without_cuda_is_one_line(tmp_path, shards_tokenizer_dir, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    argv = ["build", "--source", "embedded:shapes", "--out", str(tmp_path / "o"), "--no-progress"]
    code = main([*argv, "--tokenizer", str(shards_tokenizer_dir), "--device", "cuda", "--batch-size", "64"])
    err = capsys.readouterr().err
    assert code == 2 and err == "showo-data: error: device 'cuda' requested but CUDA is not available\n"
    assert not (tmp_path / "o").exists()
