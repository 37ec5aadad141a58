"""history-replay bench: trace format, replay scoring and CLI, on a synthetic trace (no demo run)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from trainer.bench.history_replay import load_trace, main, replay, save_trace, summary


def synthetic_trace(steps=40, n=200, batch=50, seed=0):
    """Prompts with fixed values; BASIS priors from 8 reference draws; one reward per step."""
    rng = np.random.default_rng(seed)
    value = rng.uniform(0.05, 0.95, n)
    ids = np.char.add("p", np.arange(n).astype(str))
    priors = (rng.binomial(8, value) + 0.5) / 9.0
    idx = [rng.choice(n, batch, replace=False) for _ in range(steps)]
    rewards = [rng.binomial(1, value[i]).astype(float) for i in idx]
    rewards[3][0] = np.nan  # an unscorable sample is left out of every score
    return {"priors": (ids, priors, 8), "ids": [ids[i] for i in idx], "rewards": rewards}, value, idx


def test_trace_round_trip(tmp_path):
    trace, _, _ = synthetic_trace()
    save_trace(tmp_path / "t.npz", trace)
    back = load_trace(tmp_path / "t.npz")
    assert back["priors"][2] == 8 and np.array_equal(back["priors"][1], trace["priors"][1])
    assert all(np.array_equal(a, b) for a, b in zip(back["ids"], trace["ids"], strict=True))
    assert all(np.array_equal(a, b, equal_nan=True)
               for a, b in zip(back["rewards"], trace["rewards"], strict=True))


def test_score_differences_track_value_mse_differences():
    """E[(b - r)^2] = E[(b - V)^2] + E[V(1 - V)] when b does not see r: the score gap between two
    variants is their value-MSE gap (here, BASIS with history against without, on known values)."""
    trace, value, idx = synthetic_trace(steps=120, n=400, batch=200, seed=1)
    variants = {"basis": {}, "basis[history=off]": {"history": False}}
    scores = replay(trace, variants)
    assert set(scores) == {"basis", "basis[history=off]", "loo_batch_mean"}
    assert all(s.shape == (120,) and np.isfinite(s).all() for s in scores.values())

    from trainer.advantages import AdvantageBatch, get_estimator

    mse = {}
    for label, options in variants.items():
        est = get_estimator("basis", **options)
        est.set_priors(*trace["priors"][:2], n0=8)
        errs = [np.mean((est.compute(AdvantageBatch(r, ids)).baselines - value[i]) ** 2)
                for ids, r, i in zip(trace["ids"], trace["rewards"], idx, strict=True)]
        mse[label] = float(np.mean(errs))
    gap_scores = scores["basis[history=off]"].mean() - scores["basis"].mean()
    gap_mse = mse["basis[history=off]"] - mse["basis"]
    assert gap_mse > 0.005  # history helps when values do not move
    assert gap_scores == pytest.approx(gap_mse, abs=0.3 * gap_mse)
    out = summary(scores)
    assert out["basis"]["minus_basis"] == 0.0 and len(out["basis"]["by_part"]) == 4


def test_cli_replays_a_saved_trace(tmp_path, capsys):
    trace, _, _ = synthetic_trace()
    save_trace(tmp_path / "t.npz", trace)
    assert main(["--trace", str(tmp_path / "t.npz")]) == 0
    assert "basis[history=off]" in capsys.readouterr().out
    assert main(["--trace", str(tmp_path / "t.npz"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["steps"] == 40 and "loo_batch_mean" in out["variants"]


def test_reference_rewards_add_smaller_offline_budgets(tmp_path):
    """With the raw reference rewards in the trace, the replay also scores priors from the first
    8 and 16 of them on the same trajectory; more reference rollouts never hurt much and the
    variants really differ (their priors do)."""
    trace, value, _ = synthetic_trace(steps=30, n=300, batch=100, seed=2)
    rng = np.random.default_rng(5)
    reference = rng.binomial(1, value[:, None], size=(300, 24)).astype(float)
    trace["priors"] = (trace["priors"][0], (reference.sum(1) + 0.5) / 25.0, 24)
    trace["reference"] = reference
    save_trace(tmp_path / "t.npz", trace)
    back = load_trace(tmp_path / "t.npz")
    assert np.array_equal(back["reference"], reference)
    scores = replay(back, {"basis": {}})
    assert set(scores) == {"basis", "basis[n0=8]", "basis[n0=16]", "loo_batch_mean"}
    assert not np.allclose(scores["basis[n0=8]"], scores["basis[n0=16]"])
    # Values do not move here, so the prior is most of what BASIS knows early on.
    assert scores["basis"][:3].mean() < scores["basis[n0=8]"][:3].mean()
