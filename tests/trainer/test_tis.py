"""Truncated importance sampling weights (trainer/rollout/tis.py): values, cap, metrics, no grad."""

from __future__ import annotations

import math

import pytest
import torch

from trainer.rollout.tis import tis_metrics, tis_weights


def test_weights_are_the_truncated_probability_ratio():
    trainer = torch.tensor([[-1.0, -2.0, -0.5], [-3.0, -0.1, -4.0]])
    engine = torch.tensor([[-1.0, -1.0, -3.0], [-3.5, -0.1, -1.0]])
    w = tis_weights(trainer, engine, cap=2.0)
    expected = torch.minimum((trainer - engine).exp(), torch.tensor(2.0))
    torch.testing.assert_close(w, expected)
    assert w.shape == (2, 3) and w[0, 0] == 1.0 and w[0, 2] == 2.0


def test_no_overflow_and_no_gradient():
    trainer = torch.tensor([[0.0, -1.0]], requires_grad=True)
    engine = torch.tensor([[-1000.0, -1.0]])  # ratio e^1000 would be inf
    w = tis_weights(trainer, engine, cap=3.0)
    assert torch.isfinite(w).all() and math.isclose(float(w[0, 0]), 3.0, rel_tol=1e-6)
    assert not w.requires_grad


def test_metrics_count_only_valid_tokens():
    trainer = torch.tensor([[0.0, 0.0, 0.0, 5.0]])
    engine = torch.tensor([[0.0, -2.0, 0.0, 0.0]])  # ratios 1, e^2 (clipped at 2), 1, pad
    mask = torch.tensor([[1, 1, 1, 0]])
    m = tis_metrics(trainer, engine, mask, cap=2.0)
    assert m["tis/clipped_frac"] == pytest.approx(1 / 3)
    assert m["tis/mean_weight"] == pytest.approx((1 + 2 + 1) / 3)
    empty = tis_metrics(trainer, engine, torch.zeros_like(mask), cap=2.0)
    assert empty == {"tis/mean_weight": 1.0, "tis/clipped_frac": 0.0}


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="cap"):
        tis_weights(torch.zeros(1, 2), torch.zeros(1, 2), cap=0.0)
    with pytest.raises(ValueError, match="shape"):
        tis_weights(torch.zeros(1, 2), torch.zeros(1, 3), cap=2.0)
