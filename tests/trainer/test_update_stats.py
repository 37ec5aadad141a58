"""trainer.loop.UpdateStats: the typed figures of one update and the metric names they report
(docs/architecture.md lists them; the dashboard reads them)."""

from __future__ import annotations

import math

import pytest
import torch

from trainer.loop import UpdateStats

BASE = ["loss/policy", "loss/kl", "loss/clip_frac", "optim/grad_norm", "optim/lr",
        "rollout/logprob_gap"]


@pytest.mark.parametrize(("with_kl", "with_tis", "extra"), [
    (False, False, []),
    (True, False, ["kl/mean"]),
    (False, True, ["tis/mean_weight", "tis/clipped_frac"]),
])
def test_metric_names_depend_only_on_what_the_run_has(with_kl, with_tis, extra):
    stats = UpdateStats(lr=1e-3, with_kl=with_kl, with_tis=with_tis)
    assert list(stats.metrics()) == BASE + extra


def test_loss_figures_average_over_epochs_and_gap_and_tis_are_per_token():
    stats = UpdateStats(lr=0.5, with_kl=True, with_tis=True, grad_norm=2.0)
    for policy in (1.0, 3.0):  # two micro-batches in each of two epochs
        stats.add_loss({"policy": torch.tensor(policy), "kl": torch.tensor(0.2),
                        "kl_mean": torch.tensor(2.0), "clip_frac": torch.tensor(0.1)}, epochs=2)
    stats.tokens, stats.gap_sum = 4.0, 2.0
    stats.tis_weight_sum, stats.tis_clipped_sum = 3.0, 1.0
    m = stats.metrics()
    assert m["loss/policy"] == pytest.approx(2.0) and m["loss/kl"] == pytest.approx(0.2)
    assert m["kl/mean"] == pytest.approx(2.0) and m["loss/clip_frac"] == pytest.approx(0.1)
    assert (m["optim/lr"], m["optim/grad_norm"]) == (0.5, 2.0)
    assert m["rollout/logprob_gap"] == 0.5
    assert (m["tis/mean_weight"], m["tis/clipped_frac"]) == (0.75, 0.25)
    # No response tokens (every sequence skipped): figures stay finite.
    empty = UpdateStats(lr=0.1, with_kl=False, with_tis=True).metrics()
    assert all(math.isfinite(v) for v in empty.values())
