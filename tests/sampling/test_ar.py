"""Autoregressive image sampler: cached == recompute, CFG on the first token."""

import torch

from showo.attention import omni_attention_mask
from showo.sampling import ar

PROMPTS = ["a red circle", "two green stars and a blue square"]


def test_cached_ar_equals_recompute(small_showo):
    prompter = small_showo.prompter()
    for guidance in (0.0, 1.5):
        runs = [
            ar.generate(
                small_showo,
                prompter,
                PROMPTS,
                guidance,
                top_k=20,
                generator=torch.Generator().manual_seed(0),
                use_cache=c,
            )
            for c in (True, False)
        ]
        assert runs[0].shape == (2, prompter.num_image_tokens)
        assert torch.equal(runs[0], runs[1])


def test_first_token_is_greedy_over_guided_logits_at_soi(small_showo):
    model, prompter, w = small_showo, small_showo.prompter(), 2.0
    vocab, n = model.vocab, prompter.num_image_tokens
    codes = ar.generate(model, prompter, PROMPTS, w, temperature=0.0)
    masked = torch.full((2, n), vocab.mask_id)
    logits = []
    for texts in (PROMPTS, ["", ""]):
        ids = prompter.t2i_gen(texts, masked)[:, : -(n + 1)]  # through [soi]
        logits.append(model(ids, omni_attention_mask(ids, vocab, "causal"))[:, -1, vocab.image_slice])
    assert torch.equal(codes[:, 0], ((1 + w) * logits[0] - w * logits[1]).argmax(-1))
