"""Truncated importance sampling (TIS) for the engine/trainer logprob mismatch.

A rollout engine such as vLLM samples from its own kernels (other GEMMs, attention, bf16), so its
probability of a token, pi_engine, differs slightly from the trainer's pi_theta of the same token
even with identical weights. The policy gradient is an expectation under pi_theta but the samples
come from pi_engine; weighting each token's loss by pi_theta / pi_engine corrects that, and
truncating the weight at `cap` bounds its variance (Yao et al., "Your efficient RL framework
secretly brings you off-policy RL training", 2025; the same correction verl and TRL ship).

Choices:
- Off by default: a caller enables it with a cap (2.0 is the usual value).
- The weight is a constant (no gradient flows through it), computed from the trainer's logprobs
  *before* the update (the old policy), per token.
- The log ratio is clamped at log(cap) before `exp`, so a huge mismatch cannot overflow to inf.
- Both logprobs must describe the same distribution: engines report logprobs after temperature and
  top-k/top-p, so the trainer's must be computed from logits / temperature; with top-p/top-k < full
  vocabulary the engine's renormalised logprobs are larger and the weights sit below 1 by design.
- Pure tensor functions, no IO; metrics `tis/mean_weight` and `tis/clipped_frac` over valid tokens.
"""

from __future__ import annotations

import math

import torch

__all__ = ["tis_metrics", "tis_weights"]


def tis_weights(
    trainer_logprobs: torch.Tensor, engine_logprobs: torch.Tensor, cap: float
) -> torch.Tensor:
    """Per-token weights min(pi_theta / pi_engine, cap), detached.

    trainer_logprobs, engine_logprobs: (B, T) log-probabilities of the sampled tokens (padding
    positions may hold anything; mask them in the loss). cap: > 0. Returns (B, T) float tensor.
    """
    if not cap > 0:
        raise ValueError(f"cap must be > 0, got {cap}")
    if trainer_logprobs.shape != engine_logprobs.shape:
        raise ValueError(
            f"shape mismatch: trainer {tuple(trainer_logprobs.shape)} vs engine "
            f"{tuple(engine_logprobs.shape)}"
        )
    log_ratio = (trainer_logprobs.detach() - engine_logprobs.detach()).float()
    return torch.exp(log_ratio.clamp(max=math.log(cap)))


def tis_metrics(
    trainer_logprobs: torch.Tensor,
    engine_logprobs: torch.Tensor,
    mask: torch.Tensor,
    cap: float,
) -> dict[str, float]:
    """`tis/mean_weight` (mean truncated weight) and `tis/clipped_frac` (share of tokens whose ratio
    reached the cap), over tokens where mask (B, T) is true. Empty mask -> weight 1, fraction 0."""
    weights = tis_weights(trainer_logprobs, engine_logprobs, cap)
    valid = mask.bool()
    count = int(valid.sum())
    if count == 0:
        return {"tis/mean_weight": 1.0, "tis/clipped_frac": 0.0}
    log_ratio = (trainer_logprobs.detach() - engine_logprobs.detach()).float()
    clipped = (log_ratio >= math.log(cap)) & valid
    return {
        "tis/mean_weight": float(weights[valid].mean()),
        "tis/clipped_frac": float(clipped.sum()) / count,
    }
