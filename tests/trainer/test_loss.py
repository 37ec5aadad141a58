"""Policy loss: hand-computed values for PPO-clip, KL estimators and aggregation."""

import math

import pytest
import torch
from pydantic import ValidationError

from trainer.config import LossConfig
from trainer.loss import aggregate, kl_estimate, policy_loss, ppo_clip_objective, token_logprobs


def test_token_logprobs_matches_log_softmax_by_hand():
    logits = torch.tensor([[[0.0, math.log(3.0)], [2.0, 2.0]]])  # (1, 2, 2)
    targets = torch.tensor([[1, 0]])
    out = token_logprobs(logits, targets)
    assert out.shape == (1, 2)
    assert out[0, 0].item() == pytest.approx(math.log(0.75))
    assert out[0, 1].item() == pytest.approx(math.log(0.5))


def test_ppo_clip_by_hand():
    old = torch.zeros(1, 3)
    lp = torch.log(torch.tensor([[1.5, 0.5, 1.1]]))  # ratios 1.5, 0.5, 1.1
    loss, clipped = ppo_clip_objective(lp, old, torch.tensor([1.0]), clip_eps=0.2)
    # A > 0: min(r, clip(r)) -> 1.2, 0.5, 1.1
    assert loss[0].tolist() == pytest.approx([-1.2, -0.5, -1.1])
    assert clipped[0].tolist() == [True, False, False]
    loss, clipped = ppo_clip_objective(lp, old, torch.tensor([-1.0]), clip_eps=0.2)
    # A < 0: min(-r, -clip(r)) -> -1.5, -0.8, -1.1
    assert loss[0].tolist() == pytest.approx([1.5, 0.8, 1.1])
    assert clipped[0].tolist() == [False, True, False]


def test_one_epoch_is_reinforce_gradient():
    """ratio = 1 on the first pass: gradient = -A * grad logp / tokens."""
    theta = torch.tensor([0.3, -0.2], requires_grad=True)
    lp = torch.log_softmax(theta, 0)[None, :].expand(2, 2)  # (2, 2) tokens
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    adv = torch.tensor([2.0, -1.0])
    loss, _ = policy_loss(lp, lp.detach(), adv, mask)
    loss.backward()
    g = theta.grad.clone()
    theta.grad = None
    lp2 = torch.log_softmax(theta, 0)[None, :].expand(2, 2)
    ref = -((adv[:, None] * lp2) * mask).sum() / 3
    ref.backward()
    assert torch.allclose(g, theta.grad)


def test_kl_estimators_by_hand():
    lp = torch.tensor([[math.log(0.5)]])
    ref = torch.tensor([[math.log(0.25)]])
    assert kl_estimate(lp, ref, "k1").item() == pytest.approx(math.log(2))
    # k3: exp(d) - d - 1 with d = log(0.5)
    d = math.log(0.5)
    assert kl_estimate(lp, ref, "k3").item() == pytest.approx(math.exp(d) - d - 1)
    assert kl_estimate(ref, lp, "k3").item() >= 0
    assert kl_estimate(lp, ref, "k2").item() == pytest.approx(0.5 * math.log(2) ** 2)
    with pytest.raises(ValueError, match="k1"):
        kl_estimate(lp, ref, "k4")


def test_aggregation_token_and_seq_mean():
    v = torch.tensor([[1.0, 2.0, 3.0], [10.0, 0.0, 0.0]])
    m = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    assert aggregate(v, m, "token_mean").item() == pytest.approx(16 / 4)
    assert aggregate(v, m, "seq_mean").item() == pytest.approx((2 + 10) / 2)
    assert aggregate(v, m, "constant").item() == pytest.approx(16 / (2 * 3))
    assert aggregate(v, m, "constant", max_tokens=8).item() == pytest.approx(16 / (2 * 8))


@pytest.mark.parametrize("mode", ["token_mean", "seq_mean", "constant"])
def test_micro_batches_add_up_to_full_batch(mode):
    torch.manual_seed(0)
    v = torch.randn(4, 5)
    m = (torch.rand(4, 5) > 0.3).float()
    m[:, 0] = 1
    full = aggregate(v, m, mode)
    tot = {"total_tokens": m.sum().item(), "total_seqs": 4, "max_tokens": 5}
    parts = aggregate(v[:2], m[:2], mode, **tot) + aggregate(v[2:], m[2:], mode, **tot)
    assert parts.item() == pytest.approx(full.item(), rel=1e-6)


def test_policy_loss_adds_weighted_kl():
    lp = torch.tensor([[math.log(0.5), math.log(0.5)]])
    ref = torch.tensor([[math.log(0.25), math.log(0.5)]])
    mask = torch.ones(1, 2)
    loss, stats = policy_loss(lp, lp, torch.tensor([1.0]), mask, kl_coef=0.1,
                              ref_logprobs=ref, kl_kind="k2")
    k2 = 0.5 * math.log(2) ** 2 / 2  # token mean of (log ratio)^2 / 2 over the 2 tokens
    d = math.log(0.5)
    assert stats["kl_mean"].item() == pytest.approx((math.exp(d) - d - 1) / 2)  # k3, unbiased
    assert stats["kl"].item() == pytest.approx(0.1 * k2)
    assert loss.item() == pytest.approx(-1.0 + 0.1 * k2)
    assert stats["clip_frac"].item() == 0.0


def test_token_weights_scale_the_policy_term_per_token():
    lp = torch.tensor([[-1.0, -2.0, -0.5]], requires_grad=True)
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    adv = torch.tensor([2.0])
    weights = torch.tensor([[0.5, 2.0, 7.0]])
    loss, _ = policy_loss(lp, lp.detach(), adv, mask, token_weights=weights)
    loss.backward()
    # token_mean over the 2 response tokens of -w * A * ratio: gradient -w * A / 2 per token.
    assert torch.allclose(lp.grad, torch.tensor([[-0.5, -2.0, 0.0]]))
    with pytest.raises(ValidationError, match="tis_cap"):
        LossConfig(tis_cap=1.0)  # a cap at or below 1 would only ever shrink the gradient
