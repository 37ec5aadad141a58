"""Advantage estimators: registry, input validation, group estimators, BASIS (CPU only, fast)."""

import json

import numpy as np
import pytest
from scipy.optimize import minimize_scalar
from scipy.special import expit, logit

from trainer.advantages import (
    ESTIMATORS,
    AdvantageBatch,
    Basis,
    Estimator,
    estimate_priors,
    get_estimator,
    register_estimator,
)

GROUP = ["grpo", "dr_grpo", "rloo", "group_mean"]


def batch(rewards, ids):
    return AdvantageBatch(np.asarray(rewards, dtype=float), np.asarray(ids))


def basis_with_priors(n_prompts=64, seed=0, **options):
    rng = np.random.default_rng(seed)
    ids = np.array([f"q{i}" for i in range(n_prompts)])
    p_ref = rng.uniform(0.05, 0.95, n_prompts)
    est = get_estimator("basis", **options)
    est.set_priors(ids, estimate_priors(rng.binomial(8, p_ref), 8))
    return est, ids, p_ref


# ---------------------------------------------------------------- registry


def test_registry_has_every_estimator():
    assert {"reinforce_pp", "grpo", "dr_grpo", "rloo", "basis", "group_mean"} <= set(ESTIMATORS)
    assert get_estimator("rloo").min_rollouts == 2
    assert get_estimator("basis").min_rollouts == 1


def test_duplicate_registration_is_rejected():
    with pytest.raises(ValueError, match="'grpo' is already registered"):

        @register_estimator("grpo")
        class Other(Estimator):
            pass

    assert ESTIMATORS["grpo"].__name__ == "GRPO"


def test_unknown_estimator_lists_valid_names():
    with pytest.raises(ValueError, match="unknown estimator 'ppo'.*basis.*reinforce_pp"):
        get_estimator("ppo")


def test_unknown_or_bad_option_is_named():
    with pytest.raises(ValueError, match="temperature"):
        get_estimator("basis", temperature=1.0)
    with pytest.raises(ValueError, match="history_drift"):
        get_estimator("basis", history_drift=-1.0)
    with pytest.raises(ValueError, match="normalize"):
        get_estimator("basis", normalize="whiten")


# ------------------------------------------------------------- bad inputs


@pytest.mark.parametrize(
    ("rewards", "ids", "message"),
    [
        ([0.0, 1.0], ["a"], "same length"),
        ([[0.0, 1.0]], [["a", "b"]], "1-D"),
        ([], [], "empty batch"),
        ([0.5, 1.5], ["a", "b"], r"reward\[1\] = 1.5"),
        ([-0.1, 0.5], ["a", "b"], "in \\[0, 1\\]"),
        ([np.inf, 0.5], ["a", "b"], "in \\[0, 1\\]"),
        (["x", 0.5], ["a", "b"], "numbers"),
    ],
)
def test_bad_batches_are_rejected_clearly(rewards, ids, message):
    with pytest.raises(ValueError, match=message):
        AdvantageBatch(rewards, ids)


def test_none_rewards_become_unscorable():
    b = AdvantageBatch([1.0, None, 0.0], ["a", "b", "c"])
    assert np.isnan(b.rewards[1]) and b.prompt_ids.dtype.kind == "U"


# ---------------------------------------------------------- reinforce_pp


def test_reinforce_pp_whitens_around_batch_mean_without_nan():
    res = get_estimator("reinforce_pp").compute(batch([1, 0, 0, 1, np.nan, 1], list("abcdef")))
    r = np.array([1, 0, 0, 1, 1.0])
    assert np.allclose(res.baselines, 0.6)
    expected = (r - 0.6) / (r.std() + 1e-6)
    assert np.allclose(res.advantages[[0, 1, 2, 3, 5]], expected)
    assert res.advantages[4] == 0.0


def test_reinforce_pp_unnormalised_is_r_minus_mean():
    res = get_estimator("reinforce_pp", normalize=False).compute(batch([1, 0, 0, 0], list("abcd")))
    assert np.allclose(res.advantages, [0.75, -0.25, -0.25, -0.25])


# ---------------------------------------------------------------- groups


@pytest.mark.parametrize("name", GROUP)
def test_group_estimators_refuse_k1_with_what_to_change(name):
    with pytest.raises(ValueError, match=r"k >= 2.*rollouts_per_prompt >= 2.*'basis'"):
        get_estimator(name).compute(batch([1, 0, 1], ["a", "b", "c"]))
    with pytest.raises(ValueError, match="prompt 'c' has 1"):
        get_estimator(name).compute(batch([1, 0, 1], ["a", "a", "c"]))


def test_group_baselines_by_hand():
    r = [1, 0, 1, 1, 0.5, 0, 0, 0]
    ids = ["a"] * 4 + ["b"] * 4
    gm = get_estimator("group_mean").compute(batch(r, ids))
    assert np.allclose(gm.baselines, [0.75] * 4 + [0.125] * 4)
    dr = get_estimator("dr_grpo").compute(batch(r, ids))
    assert np.allclose(dr.advantages, np.array(r) - gm.baselines)
    rl = get_estimator("rloo").compute(batch(r, ids))
    assert np.allclose(rl.baselines, [2 / 3, 1, 2 / 3, 2 / 3, 0, 0.5 / 3, 0.5 / 3, 0.5 / 3])
    gr = get_estimator("grpo").compute(batch(r, ids))
    std_a = np.std([1, 0, 1, 1], ddof=1)
    assert np.allclose(gr.advantages[:4], (np.array([1, 0, 1, 1]) - 0.75) / (std_a + 1e-6))
    # A constant group has zero std: advantages are 0, not NaN.
    const = get_estimator("grpo").compute(batch([1, 1, 0, 1], ["a", "a", "b", "b"]))
    assert np.all(np.isfinite(const.advantages)) and np.allclose(const.advantages[:2], 0)


@pytest.mark.parametrize("name", GROUP)
def test_unscorable_excluded_from_group_baselines(name):
    r = np.array([1, np.nan, 0, 1, 0, 0.5])
    ids = np.array(["a", "a", "a", "b", "b", "b"])
    with_nan = get_estimator(name).compute(batch(r, ids))
    keep = ~np.isnan(r)
    without = get_estimator(name).compute(batch(r[keep], ids[keep]))
    assert with_nan.advantages[1] == 0.0
    assert np.allclose(with_nan.baselines[keep], without.baselines)
    assert np.allclose(with_nan.advantages[keep], without.advantages)


def test_rloo_leave_one_out_and_fallback():
    r = np.array([1, 0, 1, 0.0, 1, np.nan])
    ids = np.array(["a", "a", "a", "b", "c", "c"])
    ids[3] = "a"  # a has 4 rollouts, c has one scorable one
    res = get_estimator("rloo").compute(batch(r, ids))
    for i in range(4):
        flipped = r.copy()
        flipped[i] = 1 - flipped[i]
        again = get_estimator("rloo").compute(batch(flipped, ids))
        assert again.baselines[i] == res.baselines[i]
    # c's only scorable rollout falls back to the mean of the batch's other scorable rewards.
    assert res.baselines[4] == pytest.approx(np.mean([1, 0, 1, 0]))


def test_rloo_batch_is_single_rollout_leave_one_out_batch_mean():
    r = np.array([1, 0, 1, 1, np.nan])
    ids = np.array(list("abcde"))  # one rollout per prompt: no group needed
    est = get_estimator("rloo_batch")
    assert est.min_rollouts == 1
    res = est.compute(batch(r, ids))
    # b_i = mean of the other scorable rewards, by hand; unscorable: no baseline, advantage 0.
    assert np.allclose(res.baselines[:4], [2 / 3, 1.0, 2 / 3, 2 / 3])
    assert np.allclose(res.advantages, [1 / 3, -1.0, 1 / 3, 1 / 3, 0.0])
    assert np.isnan(res.baselines[4])
    for i in range(4):  # b_i does not move with r_i: the gradient stays unbiased
        flipped = r.copy()
        flipped[i] = 1 - flipped[i]
        assert est.compute(batch(flipped, ids)).baselines[i] == res.baselines[i]
    assert get_estimator("rloo_batch").compute(batch([1.0], ["a"])).baselines[0] == 0.5


# ----------------------------------------------------------------- BASIS


def brute_force_loo_c(z, r, i, c_prev=0.0, kappa=0.0):
    keep = np.arange(z.size) != i

    def nll(c):
        x = z[keep] + c
        return np.sum(np.logaddexp(0, x) - r[keep] * x) + 0.5 * kappa * (c - c_prev) ** 2

    return minimize_scalar(nll, bounds=(-12, 12), method="bounded", options={"xatol": 1e-9}).x


@pytest.mark.parametrize("kappa", [0.0, 20.0])
def test_basis_baseline_is_sigmoid_logit_prior_plus_loo_c(kappa):
    est, ids, _ = basis_with_priors(12, history=False, eps=0.0, c_prior_strength=kappa)
    z = logit(np.array([est.priors[i] for i in ids]))
    rng = np.random.default_rng(3)
    r = rng.binomial(1, 0.6, 12).astype(float)
    res = est.compute(batch(r, ids))
    for i in range(12):
        c_i = brute_force_loo_c(z, r, i, kappa=kappa)
        assert res.baselines[i] == pytest.approx(expit(z[i] + c_i), abs=2e-4)
    assert np.allclose(res.advantages, r - res.baselines)


@pytest.mark.parametrize(
    "options", [{}, {"history": False}, {"c_prior_strength": 0.0}, {"normalize": "batch_std"}]
)
def test_basis_leave_one_out_property(options):
    """Changing r_i never changes b_i (at this step, with the same state)."""
    est, ids, p = basis_with_priors(48, **options)
    rng = np.random.default_rng(1)
    for _ in range(3):  # build some history and a non-zero previous c first
        est.compute(batch(rng.binomial(1, p).astype(float), ids))
    state = json.loads(json.dumps(est.state_dict()))
    r = rng.binomial(1, p).astype(float)
    base = est.compute(batch(r, ids)).baselines
    for i in [0, 7, 23, 47]:
        for new in (1 - r[i], 0.5, np.nan):
            other = get_estimator("basis", **options)
            other.load_state_dict(state)
            flipped = r.copy()
            flipped[i] = new
            assert other.compute(batch(flipped, ids)).baselines[i] == pytest.approx(
                base[i], abs=1e-12
            )


def test_basis_unscorable_excluded_from_fit_and_history():
    est, ids, p = basis_with_priors(30, seed=2)
    twin = get_estimator("basis")
    twin.load_state_dict(est.state_dict())
    r = np.random.default_rng(2).binomial(1, p).astype(float)
    r_nan = r.copy()
    r_nan[[3, 9]] = np.nan
    keep = ~np.isnan(r_nan)
    a = est.compute(batch(r_nan, ids))
    b = twin.compute(batch(r[keep], ids[keep]))
    assert np.all(a.advantages[~keep] == 0.0)
    assert np.allclose(a.baselines[keep], b.baselines, atol=1e-12)
    assert a.info["basis/c"] == pytest.approx(b.info["basis/c"], abs=1e-12)
    # Neither history saw prompts 3 and 9.
    assert est.state_dict() == twin.state_dict()


def test_basis_recovers_shared_calibration():
    rng = np.random.default_rng(0)
    n = 4000
    ids = np.array([f"q{i}" for i in range(n)])
    p_ref = rng.beta(1, 1, n)
    est = get_estimator("basis", history=False, c_prior_strength=0.0)
    est.set_priors(ids, estimate_priors(rng.binomial(64, p_ref), 64))
    r = rng.binomial(1, expit(logit(p_ref) + 1.3)).astype(float)
    res = est.compute(batch(r, ids))
    assert res.info["basis/c"] == pytest.approx(1.3, abs=0.15)
    assert res.info["basis/active_frac"] > 0.9
    assert np.mean((res.baselines - expit(logit(p_ref) + 1.3)) ** 2) < 0.01


def test_basis_active_set_excludes_extreme_priors():
    est = get_estimator("basis", eps=0.1, history=False)
    est.set_priors(["easy", "hard", "m1", "m2"], [0.99, 0.01, 0.4, 0.6])
    res = est.compute(batch([1, 0, 1, 0], ["easy", "hard", "m1", "m2"]))
    assert res.info["basis/active_frac"] == 0.5
    # Excluded prompts still get a calibrated baseline.
    c = res.info["basis/c"]
    assert res.baselines[0] == pytest.approx(expit(logit(0.99) + c))


def test_basis_fallback_for_prompts_without_prior():
    est = get_estimator("basis", history=False)
    est.set_priors(["a", "b"], [0.3, 0.7])
    r = np.array([1.0, 0.0, 1.0, 0.0])
    res = est.compute(batch(r, ["a", "b", "new1", "new2"]))
    # leave-one-out batch mean: new1 sees (1 + 0 + 0) / 3
    assert res.baselines[2] == pytest.approx(1 / 3)
    assert res.baselines[3] == pytest.approx(2 / 3)
    assert res.info["basis/prior_coverage"] == 0.5
    half = get_estimator("basis", history=False, fallback="half")
    half.set_priors(["a", "b"], [0.3, 0.7])
    res = half.compute(batch(r, ["a", "b", "new1", "new2"]))
    assert res.baselines[2] == pytest.approx(expit(res.info["basis/c"]))


def test_basis_without_any_prior_is_loo_mean():
    res = get_estimator("basis").compute(batch([1, 0, 0, 1], list("abcd")))
    assert np.allclose(res.baselines, [1 / 3, 2 / 3, 2 / 3, 1 / 3])


def test_basis_history_tracks_a_prompt_that_drifts():
    """A prompt whose value moved away from its prior is pulled towards its own rewards."""
    ids = np.array([f"q{i}" for i in range(40)])
    priors = np.full(40, 0.5)
    est = get_estimator("basis", c_prior_strength=0.0)
    est.set_priors(ids, priors)
    rng = np.random.default_rng(0)
    v = np.full(40, 0.5)
    v[0] = 0.95
    for _ in range(30):
        est.compute(batch(rng.binomial(1, v).astype(float), ids))
    assert est.priors["q0"] > 0.8
    assert abs(est.priors["q5"] - 0.5) < 0.25


def test_basis_state_round_trip_is_exact():
    est, ids, p = basis_with_priors(40, seed=4)
    rng = np.random.default_rng(4)
    batches = [
        batch(rng.binomial(1, p).astype(float), np.concatenate([ids[:-2], ["new", "new"]]))
        for _ in range(6)
    ]
    for b in batches[:3]:
        est.compute(b)
    restored = get_estimator("basis")
    restored.load_state_dict(json.loads(json.dumps(est.state_dict())))
    for b in batches[3:]:
        x, y = est.compute(b), restored.compute(b)
        assert np.array_equal(x.baselines, y.baselines)
        assert np.array_equal(x.advantages, y.advantages)
        assert x.info == y.info
    assert est.state_dict() == restored.state_dict()


def test_basis_bad_priors_and_state():
    est = get_estimator("basis")
    with pytest.raises(ValueError, match="strictly inside"):
        est.set_priors(["a"], [1.0])
    with pytest.raises(ValueError, match="equal length"):
        est.set_priors(["a", "b"], [0.5])
    with pytest.raises(ValueError, match="duplicate prompt id"):
        est.set_priors(["a", "a"], [0.5, 0.4])
    with pytest.raises(ValueError, match="keys"):
        est.load_state_dict({"prompt_ids": []})
    with pytest.raises(ValueError, match="stateless"):
        get_estimator("rloo").load_state_dict({"x": 1})


def test_basis_info_and_batch_std_normalisation():
    est, ids, p = basis_with_priors(50, normalize="batch_std", history=False)
    r = np.random.default_rng(5).binomial(1, p).astype(float)
    res = est.compute(batch(r, ids))
    assert set(res.info) >= {"basis/c", "basis/active_frac"}
    raw = r - res.baselines
    assert np.allclose(res.advantages, raw / (raw.std() + 1e-6))


def test_basis_cost_is_vectorised():
    """4096 samples must take milliseconds, not a Python loop over samples (loose bound)."""
    import time

    est, ids, p = basis_with_priors(4096)
    r = np.random.default_rng(0).binomial(1, p).astype(float)
    est.compute(batch(r, ids))
    t = time.perf_counter()
    est.compute(batch(r, ids))
    assert time.perf_counter() - t < 1.0


def test_basis_is_a_basis():
    assert isinstance(get_estimator("basis"), Basis)


def test_basis_paper_is_basis_without_our_extensions():
    """`basis_paper` = the paper's form: no history, no pull of c; otherwise the same numbers."""
    paper = get_estimator("basis_paper")
    assert (paper.options.history, paper.options.c_prior_strength) == (False, 0.0)
    plain, ids, p = basis_with_priors(40, seed=3, history=False, c_prior_strength=0.0)
    paper.set_priors(ids, np.array([plain.priors[i] for i in ids]))
    rng = np.random.default_rng(0)
    for _ in range(3):
        r = (rng.random(ids.size) < p).astype(float)
        a = plain.compute(AdvantageBatch(r, ids))
        b = paper.compute(AdvantageBatch(r, ids))
        np.testing.assert_allclose(a.baselines, b.baselines, atol=1e-12)
