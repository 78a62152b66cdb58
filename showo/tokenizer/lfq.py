"""Lookup-free quantization (LFQ) as in MAGVIT-v2 / Show-o's `LFQuantizer`.

Each latent channel is one bit: z > 0 -> +1, otherwise -1 (zero maps to -1). The code id is the bit
string read with channel 0 as the most significant bit, so the codebook is implicit; the `embedding`
([2^d, d] of +-1) and `power_vals` ([d] int64) buffers exist only to match the official state dict.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


def code_bits(num_bits: int) -> torch.Tensor:
    """Row k is 2*bits(k)-1 with the most significant bit first: the official `embedding` buffer.

    Built on the CPU even inside a `torch.device("meta")` context (loading builds the model on meta and
    assigns the checkpoint's tensors; meta arithmetic here would only cost time).
    """
    ids = torch.arange(2**num_bits, device="cpu")
    shifts = torch.arange(num_bits - 1, -1, -1, device="cpu")
    return ((ids.unsqueeze(1) >> shifts) & 1).float() * 2 - 1


def power_values(num_bits: int) -> torch.Tensor:
    """2^(d-1) ... 2^0 as int64: the official `power_vals` buffer."""
    return 2 ** torch.arange(num_bits - 1, -1, -1, device="cpu")


@dataclass
class LFQOutput:
    """Straight-through quantized latents, code ids [B,h,w], and the two auxiliary loss terms (unscaled)."""

    quantized: torch.Tensor
    indices: torch.Tensor
    commit_loss: torch.Tensor
    entropy_loss: torch.Tensor


class LFQuantizer(nn.Module):
    """Sign quantizer with the official commitment loss and a factorised (official) or joint entropy loss."""

    def __init__(self, num_bits: int) -> None:
        super().__init__()
        self.num_bits = num_bits
        self.register_buffer("embedding", code_bits(num_bits))
        self.register_buffer("power_vals", power_values(num_bits))

    @property
    def codebook_size(self) -> int:
        return 2**self.num_bits

    def indices(self, z: torch.Tensor) -> torch.Tensor:
        """Latents [B,d,h,w] -> code ids [B,h,w] (int64), computed straight from the signs."""
        return ((z > 0).long() * self.power_vals.view(1, -1, 1, 1)).sum(1)

    def bits(self, indices: torch.Tensor) -> torch.Tensor:
        """Code ids [B,h,w] -> +-1 latents [B,d,h,w] (the official `get_codebook_entry`)."""
        return self.embedding[indices].permute(0, 3, 1, 2).contiguous()

    def forward(
        self,
        z: torch.Tensor,
        commit_beta: float = 0.25,
        entropy: str = "factorized",
        entropy_sample: int = 1024,
    ) -> LFQOutput:
        """Quantize with a straight-through estimator and compute the loss terms.

        commit = mean((sg(z_q) - z)^2) + beta * mean((z_q - sg(z))^2) (official). Each bit is a 2-way
        categorical with logits -(z-1)^2, -(z+1)^2, i.e. p(+1) = sigmoid(4z). `entropy="factorized"` is the
        official term: mean per-bit entropy minus the entropy of the batch-mean per-bit distribution. It
        cannot see correlated bits (a thermometer code of brightness satisfies it), so `"joint"` instead
        subtracts the entropy of the batch-mean distribution over all 2^d codes (the MAGVIT-v2 paper's
        form), estimated on `entropy_sample` random positions; both are divided by d to share a scale.
        """
        hard = torch.where(z > 0, 1.0, -1.0).to(z.dtype)
        quantized = z + (hard - z).detach()
        commit = F.mse_loss(z, hard) + commit_beta * F.mse_loss(quantized, z.detach())
        flat = z.float().permute(0, 2, 3, 1).reshape(-1, self.num_bits)
        log_p, log_q = F.logsigmoid(4 * flat), F.logsigmoid(-4 * flat)
        per_bit = -(log_p.exp() * log_p + log_q.exp() * log_q)
        if entropy == "factorized":
            mean_p = log_p.exp().mean(0)
            batch = -(
                mean_p * mean_p.clamp_min(1e-12).log() + (1 - mean_p) * (1 - mean_p).clamp_min(1e-12).log()
            )
            entropy_loss = per_bit.mean() - batch.mean()
        elif entropy == "joint":
            if flat.shape[0] > entropy_sample:
                keep = torch.randperm(flat.shape[0], device=flat.device)[:entropy_sample]
                log_p, log_q = log_p[keep], log_q[keep]
            mean_code = _mean_code_distribution(log_p, log_q)
            batch = -(mean_code * mean_code.clamp_min(1e-12).log()).sum()
            entropy_loss = (per_bit.sum(1).mean() - batch) / self.num_bits
        else:
            raise ValueError(f"unknown LFQ entropy form {entropy!r}")
        return LFQOutput(quantized, self.indices(z), commit, entropy_loss)


def _group_code_probs(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """[N,k] per-bit log-probabilities -> [N,2^k] probabilities of every k-bit code (MSB first)."""
    bits01 = (code_bits(log_p.shape[1]).to(log_p.device) > 0).to(log_p.dtype)
    return (log_q.sum(1, keepdim=True) + (log_p - log_q) @ bits01.T).exp()


def _mean_code_distribution(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """Batch-mean probability of each of the 2^d codes, [2^d] with code ids MSB first.

    A code's probability factorises over its bits, so splitting the bits into a high and a low half
    turns the mean over samples into one [2^h,N] @ [N,2^l] matrix product: the same numbers as
    exponentiating N x 2^d log-probabilities, at a fraction of the elementwise work (30% of a tiny
    training step with 13 bits).
    """
    high = (log_p.shape[1] + 1) // 2
    p_high = _group_code_probs(log_p[:, :high], log_q[:, :high])
    p_low = _group_code_probs(log_p[:, high:], log_q[:, high:])
    return (p_high.T @ p_low).flatten() / log_p.shape[0]
