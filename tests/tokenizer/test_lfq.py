"""LFQ: code-id convention (channel 0 = MSB, zero -> -1), exact round trips, official loss formulas."""

import pytest
import torch

from showo.tokenizer.lfq import LFQuantizer


def reference_bits(code: int, num_bits: int) -> list[float]:
    """Python's own binary formatting, MSB first, mapped to +-1."""
    return [1.0 if c == "1" else -1.0 for c in format(code, f"0{num_bits}b")]


def test_every_13_bit_code_round_trips_through_bits():
    lfq = LFQuantizer(13)
    ids = torch.arange(8192).view(1, 64, 128)
    bits = lfq.bits(ids)
    assert bits.shape == (1, 13, 64, 128)
    assert torch.equal(lfq.indices(bits), ids)
    flat = bits.permute(0, 2, 3, 1).reshape(-1, 13)
    for code in (0, 1, 2, 77, 4095, 4096, 8191):
        assert flat[code].tolist() == reference_bits(code, 13)


def test_bit_convention_matches_the_official_examples():
    lfq = LFQuantizer(13)
    assert lfq.embedding[1].tolist() == [-1.0] * 12 + [1.0]
    assert lfq.embedding[4096].tolist() == [1.0] + [-1.0] * 12
    assert lfq.power_vals.dtype == torch.int64
    assert lfq.power_vals.tolist() == [2**i for i in range(12, -1, -1)]


def test_indices_read_signs_msb_first_and_zero_is_minus_one():
    lfq = LFQuantizer(5)
    z = torch.randn(3, 5, 4, 6)
    z[0, :, 0, 0] = 0.0
    ids = lfq.indices(z)
    assert ids[0, 0, 0] == 0
    for b, y, x in [(0, 1, 2), (1, 3, 5), (2, 0, 0)]:
        bits = "".join("1" if v > 0 else "0" for v in z[b, :, y, x].tolist())
        assert ids[b, y, x].item() == int(bits, 2)


def test_forward_is_straight_through_with_official_losses():
    torch.manual_seed(0)
    lfq = LFQuantizer(6)
    z = torch.randn(2, 6, 3, 3, requires_grad=True)
    out = lfq(z, commit_beta=0.25)
    hard = torch.where(z > 0, 1.0, -1.0)
    assert torch.equal(out.quantized.detach(), hard)
    assert torch.equal(out.indices, lfq.indices(z.detach()))
    out.quantized.sum().backward()
    assert torch.equal(z.grad, torch.ones_like(z))

    zf = z.detach().permute(0, 2, 3, 1).reshape(-1, 6)
    hf = hard.permute(0, 2, 3, 1).reshape(-1, 6)
    commit = ((hf - zf) ** 2).mean() + 0.25 * ((hf - zf) ** 2).mean()
    assert torch.allclose(out.commit_loss, commit)

    dist = torch.distributions.Categorical(logits=torch.stack([-((zf - 1) ** 2), -((zf + 1) ** 2)], -1))
    entropy = (
        dist.entropy().mean() - torch.distributions.Categorical(probs=dist.probs.mean(0)).entropy().mean()
    )
    assert torch.allclose(out.entropy_loss, entropy, atol=1e-6)


@pytest.mark.parametrize("bits", [4, 5])
def test_joint_entropy_matches_a_brute_force_code_distribution(bits):
    torch.manual_seed(1)
    lfq = LFQuantizer(bits)
    z = (torch.randn(2, bits, 3, 3) * 0.7).requires_grad_()
    out = lfq(z, entropy="joint", entropy_sample=10_000)
    flat = z.permute(0, 2, 3, 1).reshape(-1, bits)
    p_plus = torch.sigmoid(4 * flat)
    codes = torch.stack(
        [
            torch.prod(torch.where(torch.tensor(reference_bits(k, bits)) > 0, p_plus, 1 - p_plus), dim=1)
            for k in range(2**bits)
        ],
        1,
    )
    assert torch.allclose(codes.sum(1), torch.ones(len(flat)))
    per_sample = -(codes * codes.log()).sum(1).mean()
    mean = codes.mean(0)
    expected = (per_sample - -(mean * mean.log()).sum()) / bits
    assert torch.allclose(out.entropy_loss, expected, atol=1e-5)
    (grad,) = torch.autograd.grad(out.entropy_loss, z)
    (expected_grad,) = torch.autograd.grad(expected, z)
    assert torch.allclose(grad, expected_grad, atol=1e-5)
