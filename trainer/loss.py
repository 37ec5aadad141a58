"""Token-level policy loss: pure tensor functions, no model, no IO.

Shapes: B sequences, T response positions (padded), V vocabulary. `mask` (B, T) is 1 on real
response tokens, 0 on padding.

Choices:
- PPO-clip per token on the ratio exp(logp - old_logp) (Schulman et al. 2017). With one update per
  batch, old_logp is the same forward detached, the ratio is 1 and the clip never bites: the
  gradient is exactly REINFORCE with the given advantages (DESIGN.md section 4).
- KL to a frozen reference, per token, with Schulman's estimators (http://joschu.net/blog/kl-approx.html):
  k1 = logp - ref_logp (unbiased, can be negative), k3 = exp(ref - logp) - (ref - logp) - 1
  (unbiased, always >= 0, lower variance). Added to the loss as kl_coef * KL, as GRPO does.
- Aggregation: `token_mean` divides the sum over all tokens of the batch by their count (long
  answers weigh more); `seq_mean` averages each sequence over its tokens, then over sequences.
  Both take the *whole batch's* normaliser so micro-batches can be summed into the same value.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F

Aggregation = Literal["token_mean", "seq_mean"]


def token_logprobs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log softmax(logits)[targets]. logits (B, T, V), targets (B, T) int -> (B, T) float32."""
    logp = F.log_softmax(logits.float(), dim=-1)
    return logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)


def kl_estimate(
    logprobs: torch.Tensor, ref_logprobs: torch.Tensor, kind: Literal["k1", "k3"] = "k3"
) -> torch.Tensor:
    """Per-token KL(pi || pi_ref) estimate on tokens sampled from pi. (B, T), (B, T) -> (B, T)."""
    if kind == "k1":
        return logprobs - ref_logprobs
    if kind == "k3":
        d = ref_logprobs - logprobs
        return torch.exp(d) - d - 1.0
    raise ValueError(f"kl kind must be 'k1' or 'k3', got {kind!r}")


def ppo_clip_objective(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    clip_eps: float = 0.2,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token clipped surrogate loss (to minimise) and clipped indicator.

    logprobs, old_logprobs: (B, T); advantages: (B,) per sequence or (B, T) per token.
    Returns (loss (B, T) = -min(ratio A, clip(ratio, 1-eps, 1+eps) A), clipped (B, T) bool).
    """
    adv = advantages if advantages.dim() == 2 else advantages[:, None]
    ratio = torch.exp(logprobs - old_logprobs)
    unclipped = ratio * adv
    clipped = ratio.clamp(1.0 - clip_eps, 1.0 + clip_eps) * adv
    return -torch.minimum(unclipped, clipped), clipped < unclipped


def aggregate(
    values: torch.Tensor,
    mask: torch.Tensor,
    mode: Aggregation,
    total_tokens: float | None = None,
    total_seqs: float | None = None,
) -> torch.Tensor:
    """Scalar mean of per-token `values` (B, T) over `mask` (B, T).

    token_mean: sum(values * mask) / total_tokens (default: mask.sum()).
    seq_mean: sum_b [sum_t values * mask / sum_t mask] / total_seqs (default: B). Sequences with
    no tokens contribute 0. Passing the whole batch's totals makes micro-batch results add up to
    the full-batch value.
    """
    mask = mask.to(values.dtype)
    if mode == "token_mean":
        denom = mask.sum() if total_tokens is None else torch.tensor(float(total_tokens))
        return (values * mask).sum() / denom.clamp_min(1.0)
    if mode == "seq_mean":
        per_seq = (values * mask).sum(-1) / mask.sum(-1).clamp_min(1.0)
        denom = values.shape[0] if total_seqs is None else total_seqs
        return per_seq.sum() / max(float(denom), 1.0)
    raise ValueError(f"aggregation must be 'token_mean' or 'seq_mean', got {mode!r}")


def policy_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    clip_eps: float = 0.2,
    aggregation: Aggregation = "token_mean",
    kl_coef: float = 0.0,
    ref_logprobs: torch.Tensor | None = None,
    kl_kind: Literal["k1", "k3"] = "k3",
    total_tokens: float | None = None,
    total_seqs: float | None = None,
    token_weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Total loss (scalar) = PPO-clip term + kl_coef * KL term, both aggregated the same way.

    logprobs, old_logprobs, mask, ref_logprobs: (B, T); advantages: (B,).
    token_weights: optional (B, T) detached per-token weights on the policy term (truncated
    importance sampling against the rollout engine's logprobs); None = all 1.
    Returns (loss, {"policy", "kl", "kl_mean", "clip_frac"}) — detached scalars for metrics, where
    "kl" is the weighted KL term of the loss and "kl_mean" the unweighted estimate.
    """
    pg, was_clipped = ppo_clip_objective(logprobs, old_logprobs, advantages, clip_eps)
    if token_weights is not None:
        pg = pg * token_weights
    agg: dict[str, Any] = {"mode": aggregation, "total_tokens": total_tokens, "total_seqs": total_seqs}
    pg_loss = aggregate(pg, mask, **agg)
    zero = torch.zeros((), dtype=pg_loss.dtype)
    kl_mean, kl_term = zero, zero
    if ref_logprobs is not None:
        kl_mean = aggregate(kl_estimate(logprobs, ref_logprobs, kl_kind), mask, **agg)
        kl_term = kl_coef * kl_mean
    stats = {
        "policy": pg_loss.detach(),
        "kl": kl_term.detach(),
        "kl_mean": kl_mean.detach(),
        "clip_frac": aggregate(was_clipped.float(), mask, **agg).detach(),
    }
    return pg_loss + kl_term, stats
