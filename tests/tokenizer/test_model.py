"""The tokenizer API at tiny size: batching, grids, save/load round trips, identity, and bad input."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from showo.errors import ShowoError
from showo.tokenizer import ImageTokenizer, TokenizerConfig, load_image_tokenizer
from tests.fixtures.tokenizer import TINY_TOKENIZER_CONFIG, build_tiny_image_tokenizer


def pixels(*shape, seed=0):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_tiny_fixture_geometry(tiny_image_tokenizer):
    assert tiny_image_tokenizer.codebook_size == 8192
    assert tiny_image_tokenizer.downsample_factor == 4
    codes = tiny_image_tokenizer.encode(pixels(2, 3, 64, 64))
    assert codes.shape == (2, 256) and codes.dtype == torch.int64
    assert tiny_image_tokenizer.decode(codes).shape == (2, 3, 64, 64)


def test_batched_encode_equals_per_image_encode(tiny_image_tokenizer):
    batch = pixels(5, 3, 64, 64, seed=1)
    together = tiny_image_tokenizer.encode(batch)
    alone = torch.cat([tiny_image_tokenizer.encode(batch[i : i + 1]) for i in range(5)])
    assert torch.equal(together, alone)
    decoded = tiny_image_tokenizer.decode(together)
    assert torch.allclose(decoded[3:4], tiny_image_tokenizer.decode(together[3:4]), atol=1e-5)


def test_codes_are_raster_order_of_the_latent_grid(tiny_image_tokenizer):
    x = pixels(1, 3, 32, 48, seed=2)
    codes = tiny_image_tokenizer.encode(x)
    with torch.no_grad():
        grid = tiny_image_tokenizer.quantize.indices(tiny_image_tokenizer.encoder(x))
    assert grid.shape == (1, 8, 12)
    assert torch.equal(codes, grid.reshape(1, -1))
    assert tiny_image_tokenizer.decode(codes, grid=(8, 12)).shape == (1, 3, 32, 48)


def test_encode_returns_ordinary_tensors_usable_by_autograd(tiny_image_tokenizer):
    codes = tiny_image_tokenizer.encode(pixels(1, 3, 64, 64))
    assert not codes.is_inference()
    table = torch.nn.Embedding(8192, 4)
    table(codes).sum().backward()
    assert table.weight.grad is not None


def test_save_pretrained_round_trip_and_identity(tmp_path):
    model = build_tiny_image_tokenizer(seed=3)
    model.save_pretrained(tmp_path / "tok")
    assert json.loads((tmp_path / "tok" / "config.json").read_text())["model_type"] == "showo-magvitv2-lfq"
    loaded = load_image_tokenizer(tmp_path / "tok")
    assert loaded.config == model.config
    assert not loaded.training
    x = pixels(2, 3, 64, 64, seed=4)
    assert torch.equal(loaded.encode(x), model.encode(x))
    assert loaded.identity() == model.identity()
    with torch.no_grad():
        loaded.decoder.conv_out.bias.add_(1e-3)
    assert loaded.identity() != model.identity()


def test_raw_checkpoint_with_wrapper_and_half_weights_loads_with_a_config(tmp_path):
    model = build_tiny_image_tokenizer(seed=5)
    state = {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    torch.save({"model": state, "step": torch.tensor(3)}, tmp_path / "raw.pth")
    loaded = load_image_tokenizer(tmp_path / "raw.pth", config=model.config)
    assert loaded.encoder.conv_in.weight.dtype == torch.float32
    assert torch.equal(loaded.encoder.conv_in.weight, state["encoder.conv_in.weight"].float())
    (tmp_path / "official").mkdir()
    torch.save(model.state_dict(), tmp_path / "official" / "pytorch_model.bin")
    from_dir = load_image_tokenizer(tmp_path / "official", config=model.config)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in from_dir.state_dict().items())


@pytest.mark.parametrize(
    "bad, cause",
    [
        (pixels(1, 1, 64, 64), "1 channels, expected 3"),
        (pixels(1, 4, 64, 64), "4 channels"),
        (pixels(1, 3, 62, 64), "not divisible by the downsample factor 4"),
        (pixels(3, 64, 64), r"\[B, C, H, W\]"),
        (pixels(1, 3, 64, 64) * 3, r"values must lie in \[-1, 1\]"),
        (torch.full((1, 3, 64, 64), float("nan")), r"values must lie in \[-1, 1\]"),
        (torch.zeros(1, 3, 64, 64, dtype=torch.uint8), "float tensor"),
    ],
)
def test_bad_pixels_name_the_cause(tiny_image_tokenizer, bad, cause):
    with pytest.raises(ShowoError, match=cause):
        tiny_image_tokenizer.encode(bad)


@pytest.mark.parametrize(
    "codes, grid, cause",
    [
        (torch.zeros(1, 250, dtype=torch.long), None, "not a square grid"),
        (torch.zeros(1, 256, dtype=torch.long), (8, 16), "does not hold the 256 codes"),
        (torch.full((1, 256), 8192), None, r"must lie in \[0, 8192\)"),
        (torch.zeros(1, 256), None, "integer tensor"),
    ],
)
def test_bad_codes_name_the_cause(tiny_image_tokenizer, codes, grid, cause):
    with pytest.raises(ShowoError, match=cause):
        tiny_image_tokenizer.decode(codes, grid=grid)


def test_missing_and_unexpected_keys_are_named(tmp_path):
    directory = build_tiny_image_tokenizer().save_pretrained(tmp_path / "tok")
    state = load_file(str(directory / "model.safetensors"))
    del state["decoder.conv_out.bias"]
    state["decoder.extra.weight"] = torch.zeros(2)
    save_file(state, str(directory / "model.safetensors"))
    with pytest.raises(
        ShowoError,
        match=r"missing keys \(1\): decoder\.conv_out\.bias; unexpected keys \(1\): decoder\.extra",
    ):
        load_image_tokenizer(directory)


def test_official_file_with_wrong_contents_is_rejected(tmp_path):
    torch.save(
        {"encoder.conv_in.weight": torch.zeros(128, 3, 3, 3), "junk": torch.zeros(1)}, tmp_path / "x.bin"
    )
    with pytest.raises(ShowoError, match=r"missing keys \(381\).*unexpected keys \(1\): junk"):
        load_image_tokenizer(tmp_path / "x.bin")
    torch.save({"encoder.conv_in.weight": torch.zeros(64, 3, 3, 3)}, tmp_path / "y.bin")
    state = build_tiny_image_tokenizer().state_dict()
    state["encoder.conv_in.weight"] = torch.zeros(9, 3, 3, 3)
    torch.save(state, tmp_path / "z.bin")
    with pytest.raises(
        ShowoError, match=r"encoder\.conv_in\.weight has shape \(9, 3, 3, 3\), expected \(8, 3, 3, 3\)"
    ):
        load_image_tokenizer(tmp_path / "z.bin", config=TokenizerConfig(**TINY_TOKENIZER_CONFIG))
    (tmp_path / "junk.bin").write_bytes(b"not a checkpoint")
    with pytest.raises(ShowoError, match="cannot read tokenizer checkpoint"):
        load_image_tokenizer(tmp_path / "junk.bin")


def test_missing_paths_and_foreign_configs(tmp_path):
    with pytest.raises(ShowoError, match="image tokenizer not found"):
        load_image_tokenizer(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ShowoError, match="holds neither model.safetensors nor"):
        load_image_tokenizer(tmp_path / "empty")
    directory = build_tiny_image_tokenizer().save_pretrained(tmp_path / "tok")
    (directory / "config.json").write_text('{"model_type": "vqgan"}')
    with pytest.raises(ShowoError, match="is not a showo-magvitv2-lfq config"):
        load_image_tokenizer(directory)
    (directory / "config.json").unlink()
    with pytest.raises(ShowoError, match="no config.json"):
        load_image_tokenizer(directory)


@pytest.mark.parametrize(
    "change, cause",
    [
        ({"z_channels": 17}, "z_channels must be in 1..16"),
        ({"num_res_blocks": [1, 1]}, "one entry per tokenizer config.ch_mult level"),
        ({"decoder_ch_mult": [1, 2]}, "as many levels as"),
        ({"norm_groups": 3}, "divisible by norm_groups=3"),
        ({"resolution": 66}, "not divisible by the downsample factor 4"),
    ],
)
def test_inconsistent_configs_are_rejected(change, cause):
    config = TokenizerConfig(**{**TINY_TOKENIZER_CONFIG, **change})
    with pytest.raises(ShowoError, match=cause):
        ImageTokenizer(config)
    with pytest.raises(ShowoError, match=cause):
        TokenizerConfig.from_dict(config.to_dict())
