"""BASIS's cross-prompt term, the per-sample feature array and the prompt-feature pass (CPU)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from trainer.advantages import ESTIMATORS, AdvantageBatch, estimate_priors, get_estimator
from trainer.features import prompt_features

CROSS = {"cross_prompt": True, "cross_memory": 3}


def clustered(n=64, d=8, seed=0):
    """ids (n,), reference values (n,), cluster (n,), features (n, d) identifying the cluster."""
    rng = np.random.default_rng(seed)
    cluster = np.arange(n) % 4
    centre = rng.normal(size=(4, d)) * 3
    feats = centre[cluster] + rng.normal(size=(n, d)) * 0.3
    return np.array([f"q{i}" for i in range(n)]), rng.uniform(0.2, 0.8, n), cluster, feats


def basis(ids, p_ref, seed=0, **options):
    est = get_estimator("basis", **options)
    est.set_priors(ids, estimate_priors(np.random.default_rng(seed).binomial(8, p_ref), 8))
    return est


# ---------------------------------------------------------------------- feature array


def test_features_are_optional_validated_and_ignored_by_other_estimators():
    r, ids = np.array([1.0, 0.0, 1.0]), np.array(["a", "b", "c"])
    with pytest.raises(ValueError, match=r"features must be \(n, d\) with n = 3"):
        AdvantageBatch(r, ids, np.zeros((2, 4)))
    with pytest.raises(ValueError, match="finite"):
        AdvantageBatch(r, ids, np.full((3, 2), np.nan))
    feats = np.random.default_rng(0).normal(size=(3, 5))
    for name in ("reinforce_pp", "basis", "basis_paper"):
        plain = get_estimator(name).compute(AdvantageBatch(r, ids))
        with_f = get_estimator(name).compute(AdvantageBatch(r, ids, feats))
        assert np.array_equal(plain.baselines, with_f.baselines)
        assert not get_estimator(name).uses_features
    assert get_estimator("basis", cross_prompt=True).uses_features
    assert "cross_prompt" in ESTIMATORS["basis_paper"].Options.model_fields
    assert not get_estimator("basis_paper").options.cross_prompt  # the paper's form stays plain


def test_cross_prompt_without_features_is_a_clear_error():
    ids, p, _, _ = clustered(8)
    with pytest.raises(ValueError, match="needs AdvantageBatch.features"):
        basis(ids, p, cross_prompt=True).compute(AdvantageBatch(np.ones(8), ids))


# --------------------------------------------------------------------- leave-one-out


@pytest.mark.parametrize("options", [CROSS, {**CROSS, "history": False}, {"cross_prompt": True}])
def test_cross_prompt_keeps_leave_one_out_exact(options):
    """Changing r_i never changes b_i, with the kernel term, its memory and fitted gain active."""
    ids, p, _, feats = clustered(48)
    est = basis(ids, p, **options)
    rng = np.random.default_rng(1)
    for _ in range(4):  # memory, gain and history from earlier steps
        est.compute(AdvantageBatch(rng.binomial(1, p).astype(float), ids, feats))
    state = json.loads(json.dumps(est.state_dict()))
    r = rng.binomial(1, p).astype(float)
    base = est.compute(AdvantageBatch(r, ids, feats)).baselines
    for i in [0, 5, 23, 47]:
        for new in (1 - r[i], 0.5, np.nan):
            other = get_estimator("basis", **options)
            other.load_state_dict(state)
            flipped = r.copy()
            flipped[i] = new
            b = other.compute(AdvantageBatch(flipped, ids, feats)).baselines
            assert b[i] == pytest.approx(base[i], abs=1e-12)
            assert not np.allclose(np.delete(b, i), np.delete(base, i), atol=1e-9) or new == r[i]


def test_cross_prompt_follows_drift_shared_by_similar_prompts():
    """Two clusters move up, two down (no shared shift explains it): the kernel term tracks it."""
    ids, p, cluster, feats = clustered(256, seed=3)
    move = np.where(cluster < 2, 1.5, -1.5)
    rng = np.random.default_rng(4)
    plain, cross = basis(ids, p, seed=3), basis(ids, p, seed=3, **CROSS)
    err = {"plain": [], "cross": []}
    for t in range(30):
        v = 1 / (1 + np.exp(-(np.log(p / (1 - p)) + move * t / 30)))
        pick = rng.choice(256, 64, replace=False)
        b = AdvantageBatch(rng.binomial(1, v[pick]).astype(float), ids[pick], feats[pick])
        for name, est in (("plain", plain), ("cross", cross)):
            err[name].append(np.mean((est.compute(b).baselines - v[pick]) ** 2))
    assert np.mean(err["cross"][10:]) < 0.8 * np.mean(err["plain"][10:])
    # the residuals it predicted came true, so its online gain rose above the prior's 1
    assert cross.compute(b).info["basis/cross_gain"] > 1.2


def test_cross_prompt_state_round_trip_is_exact():
    ids, p, _, feats = clustered(40, seed=5)
    est = basis(ids, p, **CROSS)
    rng = np.random.default_rng(5)
    batches = [AdvantageBatch(rng.binomial(1, p).astype(float), ids, feats) for _ in range(6)]
    for b in batches[:3]:
        est.compute(b)
    restored = get_estimator("basis", **CROSS)
    restored.load_state_dict(json.loads(json.dumps(est.state_dict())))
    for b in batches[3:]:
        assert np.array_equal(est.compute(b).baselines, restored.compute(b).baselines)
    assert est.state_dict() == restored.state_dict()
    with pytest.raises(ValueError, match="'cross' is malformed"):
        restored.load_state_dict({**est.state_dict(), "cross": {"gain": 1}})


def test_old_basis_state_without_cross_still_loads():
    ids, p, _, _ = clustered(8)
    state = basis(ids, p).state_dict()
    del state["cross"]
    get_estimator("basis").load_state_dict(state)


# ------------------------------------------------------------------ feature pass


def test_prompt_features_pool_prompt_tokens_only(tmp_path):
    from transformers import AutoModelForCausalLM

    from trainer.tiny import build_tiny_model

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(
        build_tiny_model(tmp_path / "m", layers=1, hidden=64, heads=2)).train()
    prompts = [[5, 6, 7], [8, 9, 10, 11, 12], [5, 6, 7]]
    f = prompt_features(model, prompts, pad_id=0)
    assert f.shape == (3, 64) and f.dtype == np.float64
    alone = prompt_features(model, prompts[:1], pad_id=0)
    assert np.allclose(f[0], alone[0], atol=1e-5)  # padding changes nothing
    assert np.allclose(f[0], f[2]) and not np.allclose(f[0], f[1])
    assert model.training  # the pass restores the mode it found
    with pytest.raises(ValueError, match="empty prompt"):
        prompt_features(model, [[1], []], pad_id=0)


def test_loop_feeds_features_and_resumes_exactly(tmp_path):
    """A run whose BASIS uses the cross-prompt term gets features every step (the probe's basis
    shadow too) and a stop/resume reproduces the uninterrupted run's metrics."""
    from trainer.config import TrainConfig
    from trainer.loop import train
    from trainer.sinks import JsonlSink, read_jsonl_metrics
    from trainer.tasks import generate_arithmetic, write_jsonl
    from trainer.tiny import build_tiny_model

    torch.set_num_threads(1)
    model = build_tiny_model(tmp_path / "model", layers=1, hidden=64, heads=2)
    data = write_jsonl(generate_arithmetic(40, seed=0), tmp_path / "data.jsonl")
    cfg = TrainConfig(model=str(model), dataset=str(data), reward="exact", batch_size=6,
                      sampling={"max_new_tokens": 4}, optimizer={"micro_batch_size": 6}, n0=2,
                      max_steps=4, eval_every=0, eval_size=4, probe_every=2, probe_prompts=2,
                      probe_rollouts=10, reward_workers=0, checkpoint_every=0, seed=2,
                      priors_cache_dir=str(tmp_path / "priors"),
                      estimator_options={"cross_prompt": True, "cross_memory": 2})
    train(cfg, JsonlSink(tmp_path / "a.jsonl"), run_dir=tmp_path / "a")
    stops = iter([False, False, True])
    train(cfg, JsonlSink(tmp_path / "b.jsonl"), run_dir=tmp_path / "b",
          should_stop=lambda: next(stops, False))
    train(cfg, JsonlSink(tmp_path / "b.jsonl"), run_dir=tmp_path / "b")

    def strip(path):
        return {s: {k: v for k, v in m.items() if not k.startswith(("time/", "throughput/", "priors/cached", "priors/seconds"))}
                for s, m in read_jsonl_metrics(path).items()}

    a, b = strip(tmp_path / "a.jsonl"), strip(tmp_path / "b.jsonl")
    diff = {(s, k): (a[s].get(k), b.get(s, {}).get(k)) for s in a for k in a[s]
            if a[s].get(k) != b.get(s, {}).get(k)}
    assert not diff, diff
    assert "value_mse/basis" in a[2] and np.isfinite(a[4]["basis/c"])
