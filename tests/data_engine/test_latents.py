"""`showo-data build --vae`: shards hold the VAE's raw latents (float16 [C, h, w]) instead of codes, with the
same accounting, resume, partitions, fast rerun, inspect and stats as a code build (issue 18)."""

import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
import webdataset as wds
from PIL import Image

from data_engine.build import BuildOptions, build
from data_engine.cli import main
from data_engine.finished import finished_report
from data_engine.sources import open_source
from showo.data.reader import read_shards
from showo.errors import ShowoError
from showo.sampling.images import to_pil
from showo.tokenizer.transform import showo_transform
from showo.vae import load_vae
from tests.data.hostile import npy
from tests.data_engine.test_inspection import replace, tampered

REPO = Path(__file__).resolve().parents[2]
LIMIT, SHARD_SIZE, BATCH, RESOLUTION = 12, 4, 3, 64
COMMON = dict(resolution=RESOLUTION, limit=LIMIT, shard_size=SHARD_SIZE, batch_size=BATCH, progress=False)


def options(out: Path, vae: Path, **kw) -> BuildOptions:
    values = {"source": "embedded:shapes", "workers": 0, "threads": 1, **COMMON, **kw}
    return BuildOptions(out=str(out), vae=str(vae), **values)


def cli_flags(out: Path, vae: Path) -> list[str]:
    flags = ["--source", "embedded:shapes", "--out", str(out), "--vae", str(vae)]
    flags += ["--resolution", str(RESOLUTION), "--limit", str(LIMIT), "--shard-size", str(SHARD_SIZE)]
    return [*flags, "--batch-size", str(BATCH), "--no-progress", "--threads", "1"]


def digest(directory: Path) -> dict[str, str]:
    files = sorted(directory.glob("*.tar")) + [directory / "manifest.jsonl", directory / "dropped.jsonl"]
    return {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in files}


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def vae_dir(tmp_path_factory, tiny_vae_dir) -> Path:
    """A copy of the tiny VAE (some tests hash or change its files)."""
    return Path(shutil.copytree(tiny_vae_dir, tmp_path_factory.mktemp("latents") / "vae"))


@pytest.fixture(scope="module")
def vae(vae_dir):
    return load_vae(vae_dir)


@pytest.fixture(scope="module")
def latent_build(tmp_path_factory, vae_dir) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("latent_build") / "out"
    return out, build(options(out, vae_dir))


def samples(directory: Path) -> list[dict]:
    urls = sorted(str(p) for p in directory.glob("*.tar"))
    return list(wds.WebDataset(urls, shardshuffle=False).decode())


def test_latents_are_the_vae_encoding_of_the_transformed_image(latent_build, vae, vae_dir):
    out, report = latent_build
    read = samples(out)  # webdataset's own decoders read the shards
    assert len(read) == report["written"] == report["inputs"] == LIMIT and report["images"] == LIMIT
    source = open_source("embedded:shapes", limit=LIMIT)
    originals = [
        raw.images[0] for unit in source.units(SHARD_SIZE, LIMIT) for raw in source.samples(unit, 64)
    ]
    h = RESOLUTION // vae.downsample_factor
    for sample, image in zip(read, originals, strict=True):
        stored = sample["latents.npy"]
        assert "codes.npy" not in sample
        assert stored.dtype == np.float16 and stored.shape == (vae.latent_channels, h, h)
        assert sample["json"]["grid"] == [h, h]
        pixels, _ = showo_transform(image, RESOLUTION)
        with torch.no_grad():
            expected = vae.encode(pixels[None])[0].float().numpy()
        # float16 keeps 11 significant bits: a relative error of at most 2^-11, plus batching noise
        assert np.all(np.abs(stored.astype(np.float32) - expected) <= 2**-10 * np.abs(expected) + 1e-5)
    manifest = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert len(manifest) == LIMIT // SHARD_SIZE
    identity = {
        "path": str(vae_dir.resolve()),
        "identity": vae.identity(),
        "latent_channels": vae.latent_channels,
        "downsample_factor": vae.downsample_factor,
        "scaling_factor": vae.scaling_factor,
        "shift_factor": vae.shift_factor,
    }
    build_json = json.loads((out / "build.json").read_text())
    for entry in (*manifest, build_json):
        assert entry["image_format"] == "latents" and entry["vae"] == identity and "tokenizer" not in entry
        assert entry["grid"] == [h, h]
    for entry in manifest:
        shard = out / entry["shard"]
        assert entry["sha256"] == hashlib.sha256(shard.read_bytes()).hexdigest()
        assert entry["bytes"] == shard.stat().st_size


def test_the_shard_reader_accepts_latent_shards(latent_build, vae):
    out, _ = latent_build
    read = list(read_shards(sorted(str(p) for p in out.glob("*.tar")), None))
    assert len(read) == LIMIT
    assert all(s["latents.npy"].dtype == np.float16 and s["latents.npy"].ndim == 3 for s in read)


def test_a_code_build_says_it_holds_codes(shapes_shards):
    lines = (shapes_shards / "manifest.jsonl").read_text().splitlines()
    assert {json.loads(line)["image_format"] for line in lines} == {"codes"}
    assert json.loads((shapes_shards / "build.json").read_text())["image_format"] == "codes"


def test_sigkill_then_rerun_is_byte_identical(tmp_path, latent_build, vae_dir):
    clean, _ = latent_build
    out = tmp_path / "crashed"
    argv = [sys.executable, "-m", "data_engine.cli", "build", *cli_flags(out, vae_dir)]
    for point, workers in [("input:5", "1"), ("shard_renamed:1", "0")]:
        env = {**os.environ, "SHOWO_DATA_FAILPOINT": point}
        proc = subprocess.run(
            [*argv, "--workers", workers], env=env, capture_output=True, text=True, timeout=300
        )
        assert proc.returncode == -signal.SIGKILL, (point, proc.stderr[-2000:])
        assert not (out / "manifest.jsonl").exists()
    build(options(out, vae_dir, workers=1))
    assert digest(out) == digest(clean)
    assert not list(out.glob("*.tmp"))


def test_partitions_add_up_to_one_run(tmp_path, latent_build, vae_dir):
    clean, report = latent_build
    out = tmp_path / "parts"
    first = build(options(out, vae_dir, rank=1, world_size=2))
    assert first["complete"] is False
    assert build(options(out, vae_dir, rank=0, world_size=2))["written"] == report["written"]
    assert digest(out) == digest(clean)


def test_keyframes_store_every_frame(tmp_path, vae_dir, vae):
    out = tmp_path / "keyframes"
    report = build(options(out, vae_dir, source="embedded:shapes-keyframes", limit=2, shard_size=2))
    (first, _) = read = samples(out)
    h = RESOLUTION // vae.downsample_factor
    frames = len(first["json"]["frame_captions"])
    assert first["latents.npy"].shape == (frames, vae.latent_channels, h, h)
    assert report["images"] == sum(len(s["latents.npy"]) for s in read) == 2 * frames


def test_inspect_decodes_latents_with_the_manifest_vae(capsys, tmp_path, latent_build, vae):
    out, _ = latent_build
    grid = tmp_path / "grid.png"
    code, stdout, _ = cli(capsys, "inspect", str(out), "--grid", str(grid), "--count", "3")
    assert code == 0
    rows = [json.loads(line) for line in stdout.splitlines()]
    assert [r["key"] for r in rows] == [f"shapes-000000-{i:06d}" for i in range(3)]
    picture = Image.open(grid)
    assert picture.size == (3 * RESOLUTION + 2 * 2, RESOLUTION)
    with tarfile.open(out / "shapes-000000.tar") as tar:
        stored = np.load(io.BytesIO(tar.extractfile("shapes-000000-000001.latents.npy").read()))
    with torch.no_grad():
        (expected,) = to_pil(vae.decode(torch.from_numpy(stored.astype(np.float32))[None]))
    tile = picture.crop((RESOLUTION + 2, 0, 2 * RESOLUTION + 2, RESOLUTION))
    assert np.array_equal(np.asarray(tile), np.asarray(expected))


def test_inspect_refuses_another_vae_or_a_tokenizer(capsys, tmp_path, latent_build, shards_tokenizer_dir):
    from tests.fixtures.vae import build_tiny_vae

    out, _ = latent_build
    other = tmp_path / "other"
    build_tiny_vae(seed=1).save_pretrained(other)
    grid = str(tmp_path / "g.png")
    code, _, err = cli(capsys, "inspect", str(out), "--grid", grid, "--vae", str(other))
    assert code == 2 and "but the shards were encoded with" in err and err.count("\n") == 1
    code, _, err = cli(capsys, "inspect", str(out), "--grid", grid, "--tokenizer", str(shards_tokenizer_dir))
    assert code == 2 and "the shards hold latents: --image-tokenizer does not apply" in err


def test_stats_summarise_and_check_latents(capsys, tmp_path, latent_build, vae):
    out, _ = latent_build
    code, stdout, _ = cli(capsys, "stats", str(out), "--verify")
    assert code == 0
    stats = json.loads(stdout)
    read = samples(out)
    values = np.stack([s["latents.npy"] for s in read]).astype(np.float64)
    assert stats["samples"] == LIMIT and stats["image_format"] == "latents"
    assert stats["vae"] == vae.identity() and "codes" not in stats
    assert np.allclose(stats["latents"]["mean"], values.mean(axis=(0, 2, 3)), atol=1e-4)
    assert np.allclose(stats["latents"]["std"], values.std(axis=(0, 2, 3)), atol=1e-4)

    second = read[1]["latents.npy"]
    infinite = second.copy()
    infinite[0, 0, 0] = np.inf
    for name, change, message in [
        ("shape", replace("latents.npy", npy(second[:, :-1])), "latents have shape"),
        ("infinite", replace("latents.npy", npy(infinite)), "latents hold values that are not finite"),
        (
            "float32",
            replace("latents.npy", npy(second.astype(np.float32))),
            "the shard contract says float16",
        ),
        (
            "codes",
            replace("codes.npy", npy(np.zeros(4, np.uint16))),
            "the manifest says the shards hold latents",
        ),
    ]:
        code, _, err = cli(capsys, "stats", str(tampered(out, tmp_path / name, change)))
        assert code == 2 and message in err and err.count("\n") == 1, (name, err)


def test_a_finished_vae_build_is_answered_without_torch(latent_build, vae_dir, tmp_path):
    out, report = latent_build
    script = (
        "import sys\nfrom data_engine.cli import main\n"
        f"assert main(['build', *{cli_flags(out, vae_dir)!r}]) == 0\nprint('torch' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, check=True
    )
    printed, torch_loaded = done.stdout.splitlines()
    assert json.loads(printed) == report and torch_loaded == "False"
    # another VAE file sends the rerun to the full build
    changed = tmp_path / "vae"
    shutil.copytree(vae_dir, changed)
    assert finished_report(options(out, changed)) is None
    assert finished_report(options(out, vae_dir)) == report


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing", "VAE not found"),
        ("not_diffusers", "not a diffusers model directory"),
        ("with_tokenizer", "--vae and --image-tokenizer/--tokenizer are mutually exclusive"),
        ("resolution", "is not a multiple of the VAE's downsample factor"),
        ("dedup_codes", "--dedup codes compares code sequences"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(capsys, tmp_path, vae_dir, shards_tokenizer_dir, case, message):
    argv = ["build", "--source", "embedded:shapes", "--limit", "2", "--out", str(tmp_path / "out")]
    argv += ["--no-progress", "--workers", "0", "--threads", "1"]
    vae = {"missing": tmp_path / "absent", "not_diffusers": tmp_path / "plain"}.get(case, vae_dir)
    if case == "not_diffusers":
        vae.mkdir()
        (vae / "weights.bin").write_bytes(b"\0" * 16)
    extra = {
        "with_tokenizer": ["--tokenizer", str(shards_tokenizer_dir)],
        "resolution": ["--resolution", "63"],
        "dedup_codes": ["--dedup", "codes"],
    }.get(case, ["--resolution", "64"])
    code, _, err = cli(capsys, *argv, "--vae", str(vae), *extra)
    assert code == 2, err
    assert err.startswith("showo-data: error: ") and err.count("\n") == 1 and message in err


def test_a_build_json_from_before_latents_still_resumes(tmp_path, shards_tokenizer_dir):
    """A code build whose build.json predates `image_format` is resumed, not refused."""
    out = tmp_path / "old"
    kw = dict(
        source="embedded:shapes", out=str(out), tokenizer=str(shards_tokenizer_dir), workers=0, threads=1
    )
    kw.update(resolution=64, limit=4, shard_size=2, batch_size=2, progress=False)
    report = build(BuildOptions(**kw))
    settings = json.loads((out / "build.json").read_text())
    del settings["image_format"]
    (out / "build.json").write_text(json.dumps(settings))
    (out / "finished.json").unlink()
    assert build(BuildOptions(**kw))["written"] == report["written"]
    with pytest.raises(ShowoError, match="other settings"):
        build(BuildOptions(**{**kw, "resolution": 32}))
