"""Remasking, guidance and next-token filters against naive re-computations."""

import torch

from showo.sampling.guidance import cfg_logits
from showo.sampling.next_token import filter_logits, next_token
from showo.sampling.remask import gumbel_noise, mask_by_random_topk, sample_codes


def test_cfg_is_muse_style_on_raw_logits():
    cond, uncond = torch.randn(2, 3, 7), torch.randn(2, 3, 7)
    w = 1.75
    expected = cond + w * (cond - uncond)  # == (1+w)cond - w*uncond, written differently
    assert torch.allclose(cfg_logits(cond, uncond, w), expected, atol=1e-6)
    assert torch.equal(cfg_logits(cond, uncond, 0.0), cond)


def test_gumbel_noise_is_minus_log_minus_log_of_the_generator_uniforms():
    gen_a, gen_b = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    noise = gumbel_noise(torch.Size([4, 5]), gen_a, torch.device("cpu"))
    uniform = torch.rand(4, 5, generator=gen_b)
    assert torch.allclose(noise, -torch.log(-torch.log(uniform)))


def test_zero_temperature_masks_exactly_the_lowest_confidences():
    gen = torch.Generator().manual_seed(0)
    conf = torch.rand(3, 20, generator=gen)
    counts = torch.tensor([[1], [5], [19]])
    masked = mask_by_random_topk(counts, conf, 0.0, gen)
    for row in range(3):
        lowest = set(torch.argsort(conf[row])[: counts[row, 0]].tolist())
        assert set(torch.nonzero(masked[row]).flatten().tolist()) == lowest


def test_known_tokens_are_never_remasked_even_with_hot_noise():
    gen = torch.Generator().manual_seed(1)
    for _ in range(50):
        conf = torch.rand(2, 16, generator=gen) * 1e-6
        known = torch.rand(2, 16, generator=gen) < 0.5
        known[:, :2] = False  # at least two unknown per row
        conf = torch.where(known, torch.full_like(conf, float("inf")), conf)
        unknown = (~known).sum(1, keepdim=True)
        masked = mask_by_random_topk(unknown - 1, conf, 50.0, gen)
        assert not (masked & known).any()
        assert torch.equal(masked.sum(1, keepdim=True), unknown - 1)


def test_remasking_is_reproducible_under_a_seeded_generator():
    conf = torch.rand(2, 30)
    counts = torch.tensor([[10], [3]])
    first = mask_by_random_topk(counts, conf, 1.0, torch.Generator().manual_seed(7))
    second = mask_by_random_topk(counts, conf, 1.0, torch.Generator().manual_seed(7))
    assert torch.equal(first, second)


def _naive_top_p(logits, p):
    probs = torch.softmax(logits, -1)
    keep = torch.zeros_like(logits, dtype=torch.bool)
    for row in range(logits.shape[0]):
        mass = 0.0
        for index in torch.argsort(probs[row], descending=True).tolist():
            keep[row, index] = True
            mass += probs[row, index].item()
            if mass >= p:
                break
    return keep


def test_top_k_and_top_p_keep_the_expected_sets():
    logits = torch.randn(4, 50, generator=torch.Generator().manual_seed(2))
    kept = torch.isfinite(filter_logits(logits, top_k=5))
    for row in range(4):
        assert set(torch.nonzero(kept[row]).flatten().tolist()) == set(
            torch.topk(logits[row], 5).indices.tolist()
        )
    for p in (0.1, 0.5, 0.9):
        assert torch.equal(torch.isfinite(filter_logits(logits, top_p=p)), _naive_top_p(logits, p))


def test_next_token_greedy_and_seeded_sampling():
    logits = torch.randn(3, 40)
    assert torch.equal(next_token(logits), logits.argmax(-1))
    assert torch.equal(next_token(logits, temperature=0.7, top_k=1), logits.argmax(-1))
    draw = lambda: next_token(logits, 1.0, top_p=0.9, generator=torch.Generator().manual_seed(5))  # noqa: E731
    assert torch.equal(draw(), draw())


def test_code_sampling_follows_the_distribution_and_skips_zero_probabilities():
    probs = torch.tensor([0.1, 0.0, 0.6, 0.0, 0.3])
    draws = sample_codes(probs.expand(4, 10_000, -1), torch.Generator().manual_seed(0)).flatten()
    freq = torch.bincount(draws, minlength=5).double() / draws.numel()
    assert freq[1] == 0 and freq[3] == 0
    assert torch.allclose(freq, probs.double(), atol=0.01)
    again = sample_codes(probs.expand(4, 10_000, -1), torch.Generator().manual_seed(0)).flatten()
    assert torch.equal(draws, again)
    one_hot = torch.nn.functional.one_hot(torch.tensor([[4, 0, 2]]), 5).float()
    assert torch.equal(sample_codes(one_hot, torch.Generator().manual_seed(1)), torch.tensor([[4, 0, 2]]))
