"""The official-default architecture: parameter count, keys and shapes of
docs/official-differences.md#tokenizer, strict
loading of official-format checkpoints (.safetensors and .bin), and encode/decode at 256 and 512 px."""

import re

import pytest
import torch
from safetensors.torch import save_file

from showo.tokenizer import ImageTokenizer, TokenizerConfig, load_image_tokenizer

# Keys and shapes of the official MAGVIT-v2 (docs/official-differences.md#tokenizer).
OFFICIAL_SHAPES = {
    "encoder.conv_in.weight": (128, 3, 3, 3),
    "encoder.down.0.block.0.norm1.weight": (128,),
    "encoder.down.0.block.0.conv1.weight": (128, 128, 3, 3),
    "encoder.down.0.block.0.norm2.bias": (128,),
    "encoder.down.0.block.0.conv2.weight": (128, 128, 3, 3),
    "encoder.down.1.block.0.nin_shortcut.weight": (256, 128, 1, 1),
    "encoder.down.0.downsample.conv.weight": (128, 128, 3, 3),
    "encoder.down.1.downsample.conv.weight": (256, 256, 3, 3),
    "encoder.down.2.downsample.conv.weight": (256, 256, 3, 3),
    "encoder.down.3.downsample.conv.weight": (512, 512, 3, 3),
    "encoder.mid.block_1.conv1.weight": (512, 512, 3, 3),
    "encoder.mid.attn_1.norm.weight": (512,),
    "encoder.mid.attn_1.q.weight": (512, 512, 1, 1),
    "encoder.mid.attn_1.k.weight": (512, 512, 1, 1),
    "encoder.mid.attn_1.v.weight": (512, 512, 1, 1),
    "encoder.mid.attn_1.proj_out.weight": (512, 512, 1, 1),
    "encoder.mid.block_2.conv2.weight": (512, 512, 3, 3),
    "encoder.norm_out.weight": (512,),
    "encoder.conv_out.weight": (13, 512, 3, 3),
    "encoder.quant_conv.weight": (13, 13, 1, 1),
    "decoder.post_quant_conv.weight": (13, 13, 1, 1),
    "decoder.conv_in.weight": (512, 13, 3, 3),
    "decoder.mid.attn_1.proj_out.weight": (512, 512, 1, 1),
    "decoder.up.4.block.0.conv1.weight": (512, 512, 3, 3),
    "decoder.up.1.upsample.conv.weight": (128, 128, 3, 3),
    "decoder.up.2.upsample.conv.weight": (256, 256, 3, 3),
    "decoder.up.3.upsample.conv.weight": (256, 256, 3, 3),
    "decoder.up.4.upsample.conv.weight": (512, 512, 3, 3),
    "decoder.conv_out.weight": (3, 128, 3, 3),
    "quantize.embedding": (8192, 13),
    "quantize.power_vals": (13,),
}


@pytest.fixture(scope="module")
def official() -> ImageTokenizer:
    torch.manual_seed(0)
    return ImageTokenizer(TokenizerConfig()).eval()


def test_parameter_count_tensor_count_and_bytes(official):
    state = official.state_dict()
    assert sum(p.numel() for p in official.parameters()) == 95_387_004
    assert len(state) == 382
    assert sum(v.numel() * v.element_size() for v in state.values()) == 381_974_104
    assert round(sum(p.numel() for p in official.encoder.parameters()) / 1e6, 2) == 55.44
    assert round(sum(p.numel() for p in official.decoder.parameters()) / 1e6, 2) == 39.95
    assert official.codebook_size == 8192 and official.downsample_factor == 16


def test_keys_and_shapes_named_in_the_reference(official):
    state = official.state_dict()
    for key, shape in OFFICIAL_SHAPES.items():
        assert tuple(state[key].shape) == shape, key
    assert "encoder.down.4.downsample.conv.weight" not in state
    assert "decoder.up.0.upsample.conv.weight" not in state
    assert not [k for k in state if re.search(r"\.(down|up)\.\d+\.attn", k)]
    assert not [k for k in state if "temb" in k]
    encoder_blocks = [
        len({k.split(".")[4] for k in state if k.startswith(f"encoder.down.{i}.block.")}) for i in range(5)
    ]
    decoder_blocks = [
        len({k.split(".")[4] for k in state if k.startswith(f"decoder.up.{i}.block.")}) for i in range(5)
    ]
    assert encoder_blocks == [4, 3, 4, 3, 4]
    assert decoder_blocks == [4, 4, 3, 4, 3]


def test_official_checkpoints_load_strictly_from_safetensors_and_bin(official, tmp_path):
    state = {k: v.contiguous() for k, v in official.state_dict().items()}
    st_dir = tmp_path / "magvitv2"
    st_dir.mkdir()
    save_file(state, str(st_dir / "pytorch_model.safetensors"))
    (st_dir / "config.json").write_text('{"_class_name": "MAGVITv2"}')
    bin_file = tmp_path / "magvitv2.bin"
    torch.save(state, bin_file)
    for source in (st_dir, bin_file):
        loaded = load_image_tokenizer(source)
        assert loaded.config == TokenizerConfig()
        reloaded = loaded.state_dict()
        assert list(reloaded) == list(state)
        assert all(torch.equal(reloaded[k], state[k]) for k in state)
        del loaded, reloaded


def test_encode_decode_at_256_px(official):
    torch.manual_seed(1)
    pixels = torch.rand(1, 3, 256, 256) * 2 - 1
    codes = official.encode(pixels)
    assert codes.shape == (1, 256) and codes.dtype == torch.int64
    assert 0 <= codes.min() and codes.max() < 8192
    out = official.decode(codes, grid=(16, 16))
    assert out.shape == (1, 3, 256, 256) and torch.isfinite(out).all()


def test_encode_decode_at_512_px(official):
    """32x32 codes at 512 px, on real numbers (about a CPU minute); decoding uses the default square grid,
    while the 256 px test passes the grid explicitly."""
    torch.manual_seed(2)
    pixels = torch.rand(1, 3, 512, 512) * 2 - 1
    codes = official.encode(pixels)
    assert codes.shape == (1, 1024) and codes.dtype == torch.int64
    assert 0 <= codes.min() and codes.max() < 8192
    out = official.decode(codes)
    assert out.shape == (1, 3, 512, 512) and torch.isfinite(out).all()
