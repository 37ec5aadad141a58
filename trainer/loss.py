"""Token-level policy loss: pure tensor functions, no model, no IO.

Shapes: B sequences, T response positions (padded), V vocabulary. `mask` (B, T) is 1 on real
response tokens, 0 on padding.

Choices:
- PPO-clip per token on the ratio exp(logp - old_logp) (Schulman et al. 2017). With one update per
  batch, old_logp is the same forward detached, the ratio is 1 and the clip never bites: the
  gradient is exactly REINFORCE with the given advantages (DESIGN.md section 4).
- KL to a frozen reference. What matters in a loss is the expected *gradient* (tokens are sampled
  from pi and the sampling is not differentiated), not whether the estimator's *value* is unbiased
  (Schulman's estimators, http://joschu.net/blog/kl-approx.html; exact computations in
  tests/trainer/test_loss.py on a 5-token categorical):
  - k1 = logp - ref_logp: unbiased value, but E_pi[grad k1] = E_pi[grad log pi] = 0. In the loss it
    regularises nothing (only adds noise), so the config refuses it there.
  - k2 = (logp - ref_logp)^2 / 2: biased value, but E_pi[grad k2] = E_pi[(log pi - log ref) grad
    log pi] = grad KL(pi || ref), exactly the reverse-KL gradient. The default in the loss.
  - k3 = exp(ref - logp) - (ref - logp) - 1: unbiased, >= 0 value, but E_pi[grad k3] =
    -sum_y ref(y) grad log pi(y) = grad KL(ref || pi): it pulls along the *forward* KL (what GRPO's
    loss does). Kept as a choice under that description.
  The `kl_mean` metric is always k3's value, an unbiased estimate of KL(pi || ref), whatever the
  loss uses. The other placement, KL in the reward (REINFORCE++/verl), is `kl_reward_advantages`.
- Aggregation: `token_mean` divides the sum over all tokens of the batch by their count (long
  answers weigh more); `seq_mean` averages each sequence over its tokens, then over sequences;
  `constant` divides the sum over tokens by (sequences x max_new_tokens), a constant (Dr. GRPO,
  Liu et al. 2025), so the expected gradient is the policy gradient over a fixed scale and no
  length bias enters. All take the *whole batch's* normaliser so micro-batches add up.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from trainer.config import AggregationName as Aggregation  # declared once, with the config
from trainer.config import KlEstimatorName as KlKind


def token_logprobs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log softmax(logits)[targets]. logits (B, T, V), targets (B, T) int -> (B, T) float32."""
    logp = F.log_softmax(logits.float(), dim=-1)
    return logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)


def kl_estimate(
    logprobs: torch.Tensor, ref_logprobs: torch.Tensor, kind: KlKind = "k3"
) -> torch.Tensor:
    """Per-token KL estimator on tokens sampled from pi (module docstring: what each one's gradient
    is). (B, T), (B, T) -> (B, T)."""
    if kind == "k1":
        return logprobs - ref_logprobs
    if kind == "k2":
        return 0.5 * (logprobs - ref_logprobs) ** 2
    if kind == "k3":
        d = ref_logprobs - logprobs
        return torch.exp(d) - d - 1.0
    raise ValueError(f"kl kind must be 'k1', 'k2' or 'k3', got {kind!r}")


def kl_reward_advantages(
    advantages: torch.Tensor, seq_log_ratio: torch.Tensor, kl_coef: float
) -> torch.Tensor:
    """KL in the reward (REINFORCE++ / verl placement): A_i - kl_coef * (k_i - mean_{j != i} k_j).

    advantages: (B,) of the task reward; seq_log_ratio: (B,) sum over the sequence's response tokens
    of log pi - log ref (detached; its expectation is KL(pi || ref) of the sequence distribution).
    Subtracting kl_coef * k_i from each reward makes the expected policy gradient grad E[r] -
    kl_coef * grad KL(pi || ref) exactly (reverse KL). The KL part gets a leave-one-out batch-mean
    baseline of its own (independent of sample i, so no bias; less variance), and is added after the
    estimator so that a binary-reward estimator (BASIS) still sees rewards in [0, 1]. B = 1: no
    baseline. Returns (B,).
    """
    k = seq_log_ratio.detach().to(advantages.dtype)
    n = k.numel()
    loo = (k.sum() - k) / (n - 1) if n > 1 else torch.zeros_like(k)
    return advantages - kl_coef * (k - loo)


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
    max_tokens: int | None = None,
) -> torch.Tensor:
    """Scalar mean of per-token `values` (B, T) over `mask` (B, T).

    token_mean: sum(values * mask) / total_tokens (default: mask.sum()).
    seq_mean: sum_b [sum_t values * mask / sum_t mask] / total_seqs (default: B). Sequences with
    no tokens contribute 0.
    constant: sum(values * mask) / (total_seqs * max_tokens) (defaults: B, T): a normaliser that
    depends on no sample (Dr. GRPO; `max_tokens` is the response cap, max_new_tokens).
    Passing the whole batch's totals makes micro-batch results add up to the full-batch value.
    """
    mask = mask.to(values.dtype)
    seqs = float(values.shape[0] if total_seqs is None else total_seqs)
    if mode == "token_mean":
        denom = mask.sum() if total_tokens is None else torch.tensor(float(total_tokens))
        return (values * mask).sum() / denom.clamp_min(1.0)
    if mode == "seq_mean":
        per_seq = (values * mask).sum(-1) / mask.sum(-1).clamp_min(1.0)
        return per_seq.sum() / max(seqs, 1.0)
    if mode == "constant":
        width = float(values.shape[1] if max_tokens is None else max_tokens)
        return (values * mask).sum() / max(seqs * width, 1.0)
    raise ValueError(f"aggregation must be 'token_mean', 'seq_mean' or 'constant', got {mode!r}")


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
    kl_kind: KlKind = "k2",
    total_tokens: float | None = None,
    total_seqs: float | None = None,
    max_tokens: int | None = None,
    token_weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Total loss (scalar) = PPO-clip term + kl_coef * KL term, both aggregated the same way.

    logprobs, old_logprobs, mask, ref_logprobs: (B, T); advantages: (B,).
    token_weights: optional (B, T) detached per-token weights on the policy term (truncated
    importance sampling against the rollout engine's logprobs); None = all 1.
    Returns (loss, {"policy", "kl", "kl_mean", "clip_frac"}) — detached scalars for metrics, where
    "kl" is the weighted KL term of the loss (estimator `kl_kind`) and "kl_mean" the k3 estimate of
    KL(pi || ref) (unbiased, whatever the loss uses). kl_coef = 0 with ref_logprobs given: KL
    measured, not in the loss (as with the KL in the reward).
    """
    pg, was_clipped = ppo_clip_objective(logprobs, old_logprobs, advantages, clip_eps)
    if token_weights is not None:
        pg = pg * token_weights
    agg: dict[str, Any] = {"mode": aggregation, "total_tokens": total_tokens,
                           "total_seqs": total_seqs, "max_tokens": max_tokens}
    pg_loss = aggregate(pg, mask, **agg)
    zero = torch.zeros((), dtype=pg_loss.dtype)
    kl_mean, kl_term = zero, zero
    if ref_logprobs is not None:
        kl_mean = aggregate(kl_estimate(logprobs, ref_logprobs, "k3"), mask, **agg)
        if kl_coef:
            kl_term = kl_coef * aggregate(kl_estimate(logprobs, ref_logprobs, kl_kind), mask, **agg)
    stats = {
        "policy": pg_loss.detach(),
        "kl": kl_term.detach(),
        "kl_mean": kl_mean.detach(),
        "clip_frac": aggregate(was_clipped.float(), mask, **agg).detach(),
    }
    return pg_loss + kl_term, stats
