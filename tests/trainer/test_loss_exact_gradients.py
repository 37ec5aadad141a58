"""Every loss option does what its name says: exact expected gradients on small categoricals.

The sampling of the responses is not differentiated, so what a loss term does to the policy is its
*expected gradient* E_{y ~ pi}[grad loss(y)]. Here it is computed exactly (every outcome
enumerated, weighted by its probability) through the real `policy_loss` / `kl_reward_advantages`
and compared with the true gradient of what the option claims (autograd of the exact KL or of the
exact expected reward). A 5-token categorical is a one-token response; the aggregation test uses
two-token responses with an early stop so lengths differ.
"""

from __future__ import annotations

import itertools

import pytest
import torch

from trainer.config import ConfigError, TrainConfig
from trainer.loss import kl_reward_advantages, policy_loss

F64 = torch.float64
theta0 = torch.tensor([0.3, -1.2, 0.8, 0.0, -0.4], dtype=F64)  # policy logits
REF = torch.log_softmax(torch.tensor([-0.5, 0.4, 0.1, 1.0, -1.0], dtype=F64), 0)  # reference logprobs


@pytest.fixture(autouse=True)
def _float64():
    """Exact comparisons need float64; restored after each test so later tests see float32."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(F64)
    yield
    torch.set_default_dtype(old)


def expected_grad(loss_of_outcome) -> torch.Tensor:
    """sum_y pi(y) grad_theta loss(y, log pi(y)): the expected gradient of a sampled loss."""
    theta = theta0.clone().requires_grad_(True)
    logp = torch.log_softmax(theta, 0)
    pi = logp.detach().exp()
    total = sum(pi[y] * loss_of_outcome(y, logp) for y in range(5))
    total.backward()
    return theta.grad


def true_grad(f) -> torch.Tensor:
    theta = theta0.clone().requires_grad_(True)
    f(torch.log_softmax(theta, 0)).backward()
    return theta.grad


def reverse_kl(logp):  # KL(pi || ref)
    return (logp.exp() * (logp - REF)).sum()


def forward_kl(logp):  # KL(ref || pi)
    return (REF.exp() * (REF - logp)).sum()


def kl_loss(kind):
    def loss(y, logp):
        lp = logp[y].reshape(1, 1)
        out, _ = policy_loss(lp, lp.detach(), torch.zeros(1), torch.ones(1, 1), kl_coef=1.0,
                             ref_logprobs=REF[y].reshape(1, 1), kl_kind=kind)
        return out
    return loss


def test_k2_in_the_loss_has_exactly_the_reverse_kl_gradient():
    assert torch.allclose(expected_grad(kl_loss("k2")), true_grad(reverse_kl), atol=1e-12)


def test_k3_in_the_loss_has_the_forward_kl_gradient_not_the_reverse():
    g = expected_grad(kl_loss("k3"))
    assert torch.allclose(g, true_grad(forward_kl), atol=1e-12)
    assert not torch.allclose(g, true_grad(reverse_kl), atol=1e-3)


def test_k1_in_the_loss_has_zero_expected_gradient_and_config_refuses_it():
    assert torch.allclose(expected_grad(kl_loss("k1")), torch.zeros(5), atol=1e-12)
    base = {"model": "m", "dataset": "d.jsonl", "reward": "exact"}
    with pytest.raises(ConfigError, match="loss.kl_estimator") as e:
        TrainConfig.from_dict({**base, "loss": {"kl_coef": 0.1, "kl_estimator": "k1"}})
    assert "'k2'" in str(e.value) and "'k3'" in str(e.value) and "kl_in: 'reward'" in str(e.value)
    # Allowed where it is harmless or right: no KL weight, or the log ratio in the reward.
    TrainConfig.from_dict({**base, "loss": {"kl_coef": 0.0, "kl_estimator": "k1"}})
    TrainConfig.from_dict({**base, "loss": {"kl_coef": 0.1, "kl_estimator": "k1", "kl_in": "reward"}})
    assert TrainConfig.from_dict(base).loss.kl_estimator == "k2"


def test_kl_in_the_reward_has_exactly_the_reverse_kl_gradient():
    """Batches of 2 one-token responses, every pair enumerated: the loop's placement (reward minus
    beta * log ratio, leave-one-out baseline on the KL part) gives grad E[r] - beta grad KL."""
    beta = 0.7
    reward = torch.tensor([1.0, 0.0, 0.0, 1.0, 0.0])
    theta = theta0.clone().requires_grad_(True)
    logp = torch.log_softmax(theta, 0)
    pi = logp.detach().exp()
    total = 0.0
    for y1, y2 in itertools.product(range(5), repeat=2):
        ys = [y1, y2]
        lp = logp[ys].reshape(2, 1)
        adv = kl_reward_advantages(reward[ys], (lp - REF[ys].reshape(2, 1)).sum(-1), beta)
        loss, _ = policy_loss(lp, lp.detach(), adv, torch.ones(2, 1), aggregation="seq_mean")
        total = total + pi[y1] * pi[y2] * loss
    total.backward()
    want = true_grad(lambda lq: -(lq.exp() * reward).sum() + beta * reverse_kl(lq))
    assert torch.allclose(theta.grad, want, atol=1e-12)


def test_constant_aggregation_is_the_policy_gradient_over_a_fixed_scale():
    """Responses of 1 or 2 tokens (token 0 = stop); batches of 2, every pair enumerated. With the
    constant normaliser the expected gradient is -grad E[r] / max_new_tokens exactly; token_mean
    (a sample-dependent normaliser) is not proportional to it."""
    theta_first = theta0.clone().requires_grad_(True)
    theta_second = torch.tensor([0.5, -0.5, 0.2, 0.1, 0.0], requires_grad=True)
    seqs = [(a,) if a == 0 else (a, b) for a in range(5) for b in range(5) if a or b == 0]

    def reward(s):
        return float(sum(s) % 3 == 0)

    def logps(s):  # (2,) token logprobs, 0 on the padding of a 1-token response
        l1, l2 = torch.log_softmax(theta_first, 0), torch.log_softmax(theta_second, 0)
        return torch.stack([l1[s[0]]] + ([l2[s[1]]] if len(s) > 1 else [torch.zeros(())]))

    prob = {s: logps(s).sum().detach().exp() for s in seqs}

    def expected(mode):
        total = 0.0
        for s1, s2 in itertools.product(seqs, repeat=2):
            lp = torch.stack([logps(s1), logps(s2)])  # (2, 2)
            mask = torch.tensor([[1.0, len(s1) > 1], [1.0, len(s2) > 1]])
            adv = torch.tensor([reward(s1), reward(s2)])
            loss, _ = policy_loss(lp, lp.detach(), adv, mask, aggregation=mode, max_tokens=2)
            total = total + prob[s1] * prob[s2] * loss
        return torch.cat(torch.autograd.grad(total, [theta_first, theta_second]))

    j = sum(logps(s).sum().exp() * reward(s) for s in seqs)  # E[r], exactly
    want = -torch.cat(torch.autograd.grad(j, [theta_first, theta_second])) / 2
    assert torch.allclose(expected("constant"), want, atol=1e-12)
    tm = expected("token_mean")
    assert not torch.allclose(tm / tm.norm(), want / want.norm(), atol=1e-3)


def test_dr_grpo_uses_the_constant_normaliser_by_default():
    base = {"model": "m", "dataset": "d.jsonl", "reward": "exact", "rollouts_per_prompt": 4}
    assert TrainConfig.from_dict({**base, "estimator": "dr_grpo"}).loss_aggregation == "constant"
    assert TrainConfig.from_dict({**base, "estimator": "grpo"}).loss_aggregation == "token_mean"
    chosen = {**base, "estimator": "dr_grpo", "loss": {"aggregation": "seq_mean"}}
    assert TrainConfig.from_dict(chosen).loss_aggregation == "seq_mean"
