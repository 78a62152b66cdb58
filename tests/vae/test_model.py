"""`showo.vae`: a diffusers AutoencoderKL behind encode/decode/scale, loaded from local directories only,
with one-line errors for whatever is not a diffusers AutoencoderKL directory."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from diffusers import AutoencoderKL
from safetensors.torch import load_file, save_file

from data_engine.cli import main as data_main
from showo.errors import ShowoError
from showo.vae import Vae, build_tiny_vae, load_vae


def pixels(n: int = 2, side: int = 64, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, side, side, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_shapes_and_config_numbers(tiny_vae):
    assert (tiny_vae.latent_channels, tiny_vae.downsample_factor) == (4, 4)
    assert tiny_vae.scaling_factor == pytest.approx(0.18215)  # diffusers' default, from the config
    assert tiny_vae.shift_factor == 0.0  # the config says None
    with torch.no_grad():
        raw = tiny_vae.encode(pixels())
        out = tiny_vae.decode(raw)
    assert raw.shape == (2, 4, 16, 16) and raw.dtype == torch.float32
    assert out.shape == (2, 3, 64, 64) and out.dtype == torch.float32
    assert out.min() >= -1 and out.max() <= 1


def test_encode_is_the_posterior_mean(tiny_vae):
    """Deterministic: diffusers' own posterior mean, the same on every call."""
    x = pixels()
    with torch.no_grad():
        mean = tiny_vae.model.encode(x).latent_dist.mean
        assert torch.equal(tiny_vae.encode(x), mean)
        assert torch.equal(tiny_vae.encode(x), tiny_vae.encode(x))


def test_scale_matches_the_formula_and_unscale_inverts_it():
    vae = build_tiny_vae(scaling_factor=0.5, shift_factor=0.25)
    raw = torch.randn(2, 4, 8, 8)
    assert (vae.scaling_factor, vae.shift_factor) == (0.5, 0.25)
    assert torch.allclose(vae.scale(raw), (raw - 0.25) * 0.5)
    assert torch.allclose(vae.unscale(vae.scale(raw)), raw, atol=1e-6)


def test_save_load_round_trip(tmp_path):
    vae = build_tiny_vae(latent_channels=8, seed=3)
    directory = vae.save_pretrained(tmp_path / "vae")
    assert sorted(p.name for p in directory.iterdir()) == [
        "config.json",
        "diffusion_pytorch_model.safetensors",
    ]
    loaded = load_vae(directory)
    assert isinstance(loaded, Vae) and not loaded.training and loaded.latent_channels == 8
    assert loaded.identity() == vae.identity()
    x = pixels()
    with torch.no_grad():
        assert torch.equal(loaded.encode(x), vae.encode(x))
        raw = vae.encode(x)
        assert torch.equal(loaded.decode(raw), vae.decode(raw))
    # diffusers itself reads the directory the same way
    plain = AutoencoderKL.from_pretrained(str(directory), use_safetensors=True, local_files_only=True)
    with torch.no_grad():
        assert torch.equal(plain.encode(x).latent_dist.mode(), vae.encode(x))


def test_identity_follows_weights_not_the_path(tmp_path, tiny_vae_dir, tiny_vae):
    copy = load_vae(shutil.copytree(tiny_vae_dir, tmp_path / "copy"))
    assert copy.identity() == tiny_vae.identity()
    assert build_tiny_vae(seed=1).identity() != tiny_vae.identity()
    assert build_tiny_vae(latent_channels=8).identity() != build_tiny_vae(latent_channels=4).identity()


def _bad_dirs(root: Path, good: Path) -> dict[str, tuple[Path, str]]:
    """name -> (path, a phrase the one-line error must contain)."""
    cases: dict[str, tuple[Path, str]] = {"missing": (root / "nowhere", "VAE not found")}
    a_file = root / "vae.safetensors"
    a_file.write_bytes(b"x")
    cases["file"] = (a_file, "is a file")
    (root / "empty").mkdir()
    cases["no config"] = (root / "empty", "has no config.json")
    unet = Path(shutil.copytree(good, root / "unet"))
    config = json.loads((unet / "config.json").read_text())
    (unet / "config.json").write_text(json.dumps({**config, "_class_name": "UNet2DModel"}))
    cases["other class"] = (unet, "'UNet2DModel', not a diffusers AutoencoderKL")
    no_weights = Path(shutil.copytree(good, root / "no_weights"))
    (no_weights / "diffusion_pytorch_model.safetensors").unlink()
    cases["no weights"] = (no_weights, "has no diffusion_pytorch_model.safetensors")
    truncated = Path(shutil.copytree(good, root / "truncated"))
    weights = truncated / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:200])
    cases["truncated"] = (truncated, "cannot load the VAE")
    missing_key = Path(shutil.copytree(good, root / "missing_key"))
    weights = missing_key / "diffusion_pytorch_model.safetensors"
    state = load_file(weights)
    del state["decoder.conv_in.bias"]
    save_file(state, weights)
    cases["missing key"] = (missing_key, "do not match its config: missing keys (1): decoder.conv_in.bias")
    bad_json = Path(shutil.copytree(good, root / "bad_json"))
    (bad_json / "config.json").write_text("[1, 2")
    cases["bad json"] = (bad_json, "cannot read VAE config")
    huge = Path(shutil.copytree(good, root / "huge"))
    (huge / "config.json").write_text(json.dumps({**config, "block_out_channels": [10**9]}))
    cases["huge"] = (huge, "block_out_channels must be")
    return cases


def test_bad_directories_are_one_line_errors(tmp_path, tiny_vae_dir):
    for name, (path, phrase) in _bad_dirs(tmp_path, tiny_vae_dir).items():
        with pytest.raises(ShowoError) as err:
            load_vae(path)
        assert phrase in str(err.value), name
        assert "\n" not in str(err.value), name


def test_the_data_cli_says_one_line_for_a_bad_vae(tmp_path, tiny_vae_dir, capsys):
    for name, (path, phrase) in _bad_dirs(tmp_path, tiny_vae_dir).items():
        argv = [
            "build",
            "--source",
            "embedded:shapes",
            "--out",
            str(tmp_path / "out" / name.replace(" ", "_")),
        ]
        code = data_main([*argv, "--vae", str(path), "--resolution", "64", "--limit", "2", "--no-progress"])
        err = capsys.readouterr().err
        assert code == 2 and err.startswith("showo-data: error: ") and err.count("\n") == 1, (name, err)
        assert phrase.split("'")[0] in err, (name, err)


def test_no_traceback_from_the_data_command(tmp_path, tiny_vae_dir):
    """The command as a user runs it, on weights diffusers would load with a warning and random
    values: exit 2, one line (diffusers' multi-line warning silenced), no traceback."""
    (_, phrase) = _bad_dirs(tmp_path, tiny_vae_dir)["missing key"]
    argv = ["-m", "data_engine.cli", "build", "--source", "embedded:shapes", "--out", str(tmp_path / "o")]
    done = subprocess.run(
        [
            sys.executable,
            *argv,
            "--vae",
            str(tmp_path / "missing_key"),
            "--resolution",
            "64",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("showo-data: error: VAE weights") and phrase in lines[0]
