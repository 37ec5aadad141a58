"""Hypothesis property tests: every estimator on random batches (CPU only, fast)."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from trainer.advantages import AdvantageBatch, estimate_priors, get_estimator

UNNORMALISED = {
    "dr_grpo": {},
    "rloo": {},
    "group_mean": {},
    "basis": {},
    "reinforce_pp": {"normalize": False},
}


@st.composite
def batches(draw, min_k=1):
    """Random batch: 1..12 prompts x k rollouts, rewards binary, partial or unscorable."""
    n_prompts = draw(st.integers(1, 12))
    k = draw(st.integers(min_k, 4))
    reward = st.one_of(
        st.sampled_from([0.0, 1.0]),
        st.floats(0.0, 1.0, allow_nan=False),
        st.just(float("nan")),
    )
    rewards = draw(st.lists(reward, min_size=n_prompts * k, max_size=n_prompts * k))
    ids = np.repeat([f"p{i}" for i in range(n_prompts)], k)
    order = draw(st.permutations(range(ids.size)))  # rollouts of a prompt need not be adjacent
    return AdvantageBatch(np.array(rewards), ids[list(order)])


def check(res, b: AdvantageBatch, unnormalised: bool):
    n = b.rewards.size
    ok = ~np.isnan(b.rewards)
    assert res.baselines.shape == (n,) and res.advantages.shape == (n,)
    assert np.all(np.isfinite(res.advantages))
    assert np.all(res.advantages[~ok] == 0.0)
    assert np.all(np.isfinite(res.baselines[ok]))
    assert np.all((res.baselines[ok] >= 0.0) & (res.baselines[ok] <= 1.0))
    if unnormalised:
        assert np.allclose(res.advantages[ok], (b.rewards - res.baselines)[ok])
    assert all(np.isfinite(v) for v in res.info.values())


@settings(max_examples=60, deadline=None)
@given(batches(min_k=2), st.sampled_from(["grpo", "dr_grpo", "rloo", "group_mean"]))
def test_group_estimators_on_random_batches(b, name):
    res = get_estimator(name, **UNNORMALISED.get(name, {})).compute(b)
    check(res, b, name in UNNORMALISED)


@settings(max_examples=60, deadline=None)
@given(batches(), st.booleans())
def test_reinforce_pp_on_random_batches(b, normalize):
    check(get_estimator("reinforce_pp", normalize=normalize).compute(b), b, not normalize)


@settings(max_examples=60, deadline=None)
@given(
    batches(),
    st.lists(st.integers(0, 8), min_size=12, max_size=12),
    st.booleans(),
    st.sampled_from([0.0, 20.0]),
    st.integers(1, 3),
)
def test_basis_on_random_batches(b, successes, history, kappa, steps):
    est = get_estimator("basis", history=history, c_prior_strength=kappa)
    # Priors for the first 8 prompt ids only: the rest exercise the no-prior fallback.
    est.set_priors([f"p{i}" for i in range(8)], estimate_priors(np.array(successes[:8]), 8))
    for _ in range(steps):  # stateful: later steps see history and the previous c
        res = est.compute(b)
        check(res, b, True)
        assert 0.0 <= res.info["basis/active_frac"] <= 1.0
