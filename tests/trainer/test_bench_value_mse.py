"""Value-MSE benchmark: JSON shape, scenario files, determinism, dispatcher (CPU only, fast)."""

import json

import numpy as np
import pytest

from trainer.bench.__main__ import available
from trainer.bench.__main__ import main as bench_main
from trainer.bench.scenarios import Scenario, load_scenario, make_scenario, save_scenario
from trainer.bench.value_mse import DEFAULT_VARIANTS, first_visit_bound, main, run_scenario


def small_scenario(seed=0, levels=1):
    rng = np.random.default_rng(seed)
    ref = rng.uniform(0.05, 0.95, 60)
    c = np.linspace(0, 1, 12)[:, None]
    v = 1 / (1 + (1 - ref) / ref * np.exp(-c))  # sigmoid(logit ref + c)
    return Scenario("small", v, ref, batch_size=20, n0=8, seed=seed, reward_levels=levels)


def run_json(capsys, *args):
    assert main([*args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_json_shape_for_a_scenario_file(tmp_path, capsys):
    path = tmp_path / "s.npz"
    save_scenario(path, small_scenario())
    out = run_json(capsys, "--scenario", str(path))
    assert set(out) == {"scenario", "mse", "ratio_to_reinforce_pp"}
    assert out["scenario"] == "small"
    names = {"reinforce_pp", "basis", "group_mean_4", "group_mean_8"}
    assert set(out["mse"]) == names == set(out["ratio_to_reinforce_pp"])
    assert out["ratio_to_reinforce_pp"]["reinforce_pp"] == 1.0
    assert all(0 <= v < 1 for v in out["mse"].values())


def test_minimal_design_format_file(tmp_path, capsys):
    """Only the DESIGN.md keys: ref_value defaults to true_value[0], Bernoulli rewards."""
    sc = small_scenario()
    path = tmp_path / "min.npz"
    np.savez(path, true_value=sc.true_value, batch_size=20, n0=8, seed=3)
    loaded = load_scenario(path)
    assert np.array_equal(loaded.ref_value, sc.true_value[0]) and loaded.reward_levels == 1
    assert run_json(capsys, "--scenario", str(path))["scenario"] == "min"


def test_write_scenario_then_scenario_round_trip(tmp_path, capsys):
    path = tmp_path / "sb.npz"
    assert main(["--write-scenario", "small_batch", str(path)]) == 0
    capsys.readouterr()
    sc = load_scenario(path)
    direct = make_scenario("small_batch")
    assert np.array_equal(sc.true_value, direct.true_value)
    assert (sc.batch_size, sc.n0, sc.seed) == (direct.batch_size, direct.n0, direct.seed)
    from_file = run_json(capsys, "--scenario", str(path))
    from_builtin = run_json(capsys, "--builtin", "small_batch")
    assert from_file["mse"] == from_builtin["mse"]


def test_deterministic_under_seed():
    a = run_scenario(small_scenario(seed=1))
    b = run_scenario(small_scenario(seed=1))
    c = run_scenario(small_scenario(seed=2))
    assert a == b and a != c
    assert np.array_equal(
        make_scenario("hard_fast", seed=5).true_value, make_scenario("hard_fast", seed=5).true_value
    )
    assert not np.array_equal(
        make_scenario("hard_fast", seed=5).true_value, make_scenario("hard_fast", seed=6).true_value
    )


def test_partial_credit_scenario_measures_against_expected_reward():
    """Group mean of k partial-credit rewards: MSE ~ V(1-V) / (levels * k)."""
    sc = small_scenario(levels=4)
    mse = run_scenario(sc, DEFAULT_VARIANTS)
    predicted = np.mean(sc.true_value * (1 - sc.true_value)) / (4 * 8)
    assert mse["group_mean_8"] == pytest.approx(predicted, rel=0.35)


def test_basis_beats_reinforce_pp_on_calibrated_drift():
    sc = small_scenario()
    mse = run_scenario(sc)
    assert mse["basis"] < 0.5 * mse["reinforce_pp"]


def test_bad_scenario_files(tmp_path):
    path = tmp_path / "bad.npz"
    np.savez(path, true_value=np.full((3, 4), 0.5), n0=8, seed=0)
    with pytest.raises(ValueError, match="lacks batch_size"):
        load_scenario(path)
    np.savez(path, true_value=np.full((3, 4), 1.5), batch_size=2, n0=8, seed=0)
    with pytest.raises(ValueError, match="true_value"):
        load_scenario(path)
    np.savez(path, true_value=np.full((3, 4), 0.5), batch_size=5, n0=8, seed=0)
    with pytest.raises(ValueError, match="batch_size"):
        load_scenario(path)
    with pytest.raises(ValueError, match="unknown scenario"):
        make_scenario("nope")


def test_table_output_and_dispatcher(tmp_path, capsys):
    path = tmp_path / "s.npz"
    save_scenario(path, small_scenario())
    assert bench_main(["value-mse", "--scenario", str(path)]) == 0
    out = capsys.readouterr().out
    assert "group_mean_8" in out and "/ reinforce_pp" in out
    assert "value-mse" in available() and "scenarios" not in available()
    assert bench_main(["nope"]) == 2


def test_estimator_cost_times_every_estimator():
    from trainer.bench.estimator_cost import time_estimators

    out = time_estimators(256, repeats=2)
    assert {"basis", "reinforce_pp", "grpo (k=8)", "rloo (k=8)"} <= set(out)
    assert all(0 < s < 1 for s in out.values())


def test_first_visit_bound_is_zero_when_the_reference_outcome_fixes_the_value():
    """Two difficulty classes the n0 = 8 reference rollouts cannot confuse (values 0 and 1):
    the oracle given the reference rewards is exact, so the bound is 0, while the group means
    (which ignore the reference) still pay nothing either and REINFORCE++ pays the spread."""
    v = np.tile(np.r_[np.zeros(30), np.ones(30)], (6, 1))
    sc = Scenario("two", v, v[0], batch_size=10, n0=8, seed=3)
    out = first_visit_bound(sc)
    assert out["bound"] == 0.0
    assert out["mse_first_visit"]["reinforce_pp"] > 0.1
    # 60 prompts, 6 steps of 10 distinct prompts: a prompt is new with probability < 1.
    assert 0.5 < out["first_visit_share"] <= 1.0


def test_first_visit_bound_never_above_what_basis_reaches():
    out = first_visit_bound(make_scenario("hard_fast"))
    mse = out["mse_first_visit"]
    # Nearly every one of the 4096 prompts is visited at least once in 128 steps of 256.
    assert out["first_visit_share"] == pytest.approx(4096 / (128 * 256), rel=0.01)
    assert out["bound"] <= mse["basis"] < mse["reinforce_pp"]
    # The shared-calibration estimate is close to the oracle on first visits (within 10 %).
    assert mse["basis"] <= 1.1 * out["bound"]


def test_bound_cli_table_and_json(tmp_path, capsys):
    path = tmp_path / "s.npz"
    save_scenario(path, small_scenario())
    assert main(["--scenario", str(path), "--bound"]) == 0
    assert "bound / group_mean_8 on first visits" in capsys.readouterr().out
    out = run_json(capsys, "--scenario", str(path), "--bound")
    assert set(out) == {"scenario", "first_visit_share", "mse_first_visit", "bound"}


def test_featured_scenarios_have_features_and_non_shift_drift(tmp_path):
    from trainer.bench.scenarios import FEATURED, load_scenario, make_featured, save_scenario
    from trainer.bench.value_mse import CROSS_VARIANT, DEFAULT_VARIANTS, run_scenario

    for name in FEATURED:
        sc = make_featured(name, seed=0)
        assert sc.features.shape == (sc.true_value.shape[1], 16)
        assert np.array_equal(sc.true_value, make_featured(name, seed=0).true_value)
    sc = make_featured("skills", seed=0)
    save_scenario(tmp_path / "s.npz", sc)
    assert np.array_equal(load_scenario(tmp_path / "s.npz").features, sc.features)
    # Not a logit shift: the logit change from the reference differs between prompts.
    from scipy.special import logit

    shift = logit(np.clip(sc.true_value[-1], 1e-6, 1 - 1e-6)) - logit(sc.ref_value)
    assert shift.std() > 0.5
    small = make_featured("interference", seed=0)
    small.true_value = small.true_value[:40]
    mse = run_scenario(small, (*DEFAULT_VARIANTS, CROSS_VARIANT))
    assert mse["basis[cross]"] < mse["basis"]  # skills move together: the kernel term helps
