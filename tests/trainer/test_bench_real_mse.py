"""real-mse scoring on a fabricated trace (no model run): terms, group blocks, bootstrap, files."""

from __future__ import annotations

import numpy as np

from trainer.bench.real_mse import (
    DEFAULT_SPECS,
    Spec,
    evaluate,
    group_terms,
    load_trace,
    save_trace,
    score_trace,
)
from trainer.priors import estimate_priors


def fake_trace(steps=12, n=40, batch=16, probe=4, m=32, seed=0):
    rng = np.random.default_rng(seed)
    ids = np.array([f"q{i}" for i in range(n)])
    v = rng.uniform(0.1, 0.9, n)
    feats = rng.normal(size=(n, 6))
    picks = [rng.choice(n, batch, replace=False) for _ in range(steps)]
    probe_steps = np.arange(2, steps, 3)
    return {
        "seed": seed,
        "priors": (ids, estimate_priors(rng.binomial(8, v), 8), 8),
        "ids": np.stack([ids[p] for p in picks]),
        "rewards": np.stack([rng.binomial(1, v[p]).astype(float) for p in picks]),
        "features": np.stack([feats[p] for p in picks]).astype(np.float16).astype(np.float64),
        "probe_step": probe_steps,
        "probe_rewards": np.stack([rng.binomial(1, v[picks[s][:probe], None], (probe, m))
                                   .astype(float) for s in probe_steps]),
    }


def test_group_terms_average_disjoint_blocks():
    r = np.zeros((2, 16))
    r[0, :8] = 1.0  # prompt 0: the first block all successes, the second all failures
    t = group_terms(r, 8)
    # each block's mean is 1 (resp. 0) against a truth of 0 (resp. 1) with zero variance
    assert np.allclose(t, [1.0, 0.0])


def test_evaluate_reports_every_estimator_with_paired_ratios(tmp_path):
    traces = [fake_trace(seed=0), fake_trace(seed=1)]
    save_trace(tmp_path / "t.npz", traces[0])
    again = load_trace(tmp_path / "t.npz")
    spec = Spec("basis", "basis")
    assert np.array_equal(score_trace(traces[0], spec)["terms"], score_trace(again, spec)["terms"])
    rep = evaluate(traces, DEFAULT_SPECS, reps=200)
    assert set(rep) == {s.label for s in DEFAULT_SPECS}
    gm8 = rep["group_mean_8"]
    assert gm8["ratio_to_group_mean_8"] == 1.0 and gm8["ci95"] == [1.0, 1.0]
    for r in rep.values():
        lo, hi = r["ci95"]
        assert lo <= r["ratio_to_group_mean_8"] <= hi
        assert len(r["value_mse_per_seed"]) == 2
    assert rep["reinforce_pp"]["batch_score"] is None and rep["basis"]["batch_score"] > 0
    # the paired ratio is the ratio of the pooled means
    assert np.isclose(rep["basis"]["ratio_to_group_mean_8"],
                      rep["basis"]["value_mse"] / gm8["value_mse"])
