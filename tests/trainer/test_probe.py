"""Value probe: the bias correction by hand and by simulation, shadows, group_mean_8."""

import numpy as np
import pytest

from trainer.advantages import AdvantageBatch
from trainer.probe import ValueProbe, bias_corrected_mse


def test_bias_corrected_mse_by_hand():
    b = np.array([0.5, 0.0])
    r = np.array([[1, 0, 1, 1], [0, 0, 0, 0]], dtype=float)  # V_M = 0.75, 0
    # (0.5-0.75)^2 - 0.75*0.25/3 = 0.0625 - 0.0625 = 0 ; second prompt 0
    assert bias_corrected_mse(b, r) == pytest.approx(0.0)
    r2 = np.array([[1, np.nan, 0, np.nan], [0, 0, 0, 0]])  # first prompt: V=0.5, m=2
    assert bias_corrected_mse(b, r2) == pytest.approx(((0 - 0.5 / 2) + 0) / 2)
    assert np.isnan(bias_corrected_mse(np.array([0.5]), np.array([[1.0, np.nan]])))


def test_bias_correction_is_unbiased_in_simulation():
    rng = np.random.default_rng(0)
    v = rng.uniform(0.1, 0.9, 4000)
    b = np.clip(v + rng.normal(0, 0.1, v.size), 0, 1)
    r = (rng.random((v.size, 8)) < v[:, None]).astype(float)
    naive = np.mean((b - r.mean(1)) ** 2)
    assert bias_corrected_mse(b, r) == pytest.approx(np.mean((b - v) ** 2), abs=0.003)
    assert naive > np.mean((b - v) ** 2) + 0.01  # the correction matters


def test_probe_runs_single_rollout_shadows_and_group_mean():
    probe = ValueProbe("basis", {"c_prior_strength": 5.0})
    assert {"basis", "reinforce_pp"} <= set(probe.shadows)
    assert "grpo" not in probe.shadows and probe.needs_priors
    assert probe.shadows["basis"].options.c_prior_strength == 5.0
    ids = np.array([f"p{i}" for i in range(6)])
    probe.set_priors(list(ids), np.linspace(0.1, 0.9, 6), n0=8)
    probe.observe(AdvantageBatch(np.array([0, 1, 0, 1, 1, 1.0]), ids))
    rewards = np.tile(np.array([1.0, 0.0] * 6), (2, 1))  # (2, 12)
    out = probe.measure(np.array([0, 1]), rewards)
    assert {"value_mse/basis", "value_mse/reinforce_pp", "value_mse/group_mean_8"} <= set(out)
    # group_mean_8 = 0.5 on both; truth = other 4 rewards = 0.5 -> 0 - 0.25*4/3/4
    assert out["value_mse/group_mean_8"] == pytest.approx(-(0.25 * 4 / 3) / 4)
    # Per-prompt errors (for paired comparisons) average to the reported figures.
    assert set(probe.last_detail) == {k.split("/", 1)[1] for k in out}
    for name, errs in probe.last_detail.items():
        assert len(errs) == 2
        assert np.mean(errs) == pytest.approx(out[f"value_mse/{name}"])
    small = probe.measure(np.array([0]), rewards[:1, :9])
    assert "value_mse/group_mean_8" not in small


def test_probe_state_round_trip():
    ids = np.array(["a", "b", "c"])
    one, two = ValueProbe("basis", {}), ValueProbe("basis", {})
    one.set_priors(list(ids), np.array([0.2, 0.5, 0.8]), n0=8)
    one.observe(AdvantageBatch(np.array([1.0, 0.0, 1.0]), ids))
    two.load_state_dict(one.state_dict())
    batch = AdvantageBatch(np.array([0.0, 1.0, 1.0]), ids)
    one.observe(batch)
    two.observe(batch)
    for name in one.last_baselines:
        assert np.array_equal(one.last_baselines[name], two.last_baselines[name])
