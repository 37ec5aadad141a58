"""BASIS offline priors: estimate and the JSON cache format (CPU only, fast)."""

import json

import numpy as np
import pytest

from trainer.priors import (
    estimate_priors,
    load_priors,
    priors_cache_key,
    priors_from_rewards,
    save_priors,
)


def test_jeffreys_formula_with_partial_credit():
    p = estimate_priors(np.array([0, 8, 3.5]), 8)
    assert np.allclose(p, [0.5 / 9, 8.5 / 9, 4 / 9])


def test_priors_from_rewards_drops_unscorable():
    r = np.array([[1, 0, np.nan, 1], [0.5, 0.5, 0.5, 0.5]])
    assert np.allclose(priors_from_rewards(r), [2.5 / 4, 2.5 / 5])


@pytest.mark.parametrize(
    ("s", "n0", "message"),
    [([9], 8, r"\[0, n0\]"), ([-1], 8, r"\[0, n0\]"), ([[1]], 8, "1-D"), ([1], -1, "n0")],
)
def test_bad_successes(s, n0, message):
    with pytest.raises(ValueError, match=message):
        estimate_priors(np.array(s), n0)


def test_save_load_round_trip_is_exact(tmp_path):
    ids = ["a", "b", "c"]
    p = estimate_priors(np.array([0, 3, 8]), 8) * (1 + 1e-13)
    meta = {"model": "tiny", "n0": 8, "seconds": 1.5}
    path = save_priors(tmp_path / "sub" / "priors.json", ids, p, meta)
    got_ids, got_p, got_meta = load_priors(path)
    assert got_ids == ids and np.array_equal(got_p, p) and got_meta == meta
    assert list(path.parent.iterdir()) == [path]  # no temp file left behind


def test_load_rejects_foreign_files(tmp_path):
    bad = tmp_path / "x.json"
    bad.write_text(json.dumps({"format": "other"}))
    with pytest.raises(ValueError, match="not a priors file"):
        load_priors(bad)
    bad.write_text("{")
    with pytest.raises(ValueError, match="invalid JSON"):
        load_priors(bad)
    with pytest.raises(ValueError, match="unique"):
        save_priors(tmp_path / "d.json", ["a", "a"], np.array([0.5, 0.5]))


def test_cache_key_depends_on_every_part():
    base = priors_cache_key("m", "d", 8, {"temperature": 1.0, "top_p": 1.0})
    assert base == priors_cache_key("m", "d", 8, {"top_p": 1.0, "temperature": 1.0})
    assert base != priors_cache_key("m", "d", 16, {"temperature": 1.0, "top_p": 1.0})
    assert base != priors_cache_key("m", "d", 8, {"temperature": 0.7, "top_p": 1.0})
    assert base != priors_cache_key("m2", "d", 8, {"temperature": 1.0, "top_p": 1.0})
