"""Merging advantage histograms for downsampling: rebinning and rounding keep every count (pure, no DB)."""

from __future__ import annotations

import numpy as np
import pytest

from core.services.metrics import merge_histograms, rebin


def test_rebin_onto_the_same_edges_is_the_identity_and_outside_mass_is_folded():
    edges = np.array([-1.0, 0.0, 0.5, 1.0])
    counts = np.array([3.0, 4.0, 5.0])
    assert rebin(edges, counts, edges).tolist() == [3.0, 4.0, 5.0]
    # onto [-0.5, 0.25, 2]: half of [-1, 0) is below -0.5 (folded into bin 0), [0, .5) splits in two halves
    assert rebin(edges, counts, np.array([-0.5, 0.25, 2.0])).tolist() == [3.0 + 2.0, 2.0 + 5.0]


@pytest.mark.parametrize("seed", range(5))
def test_merge_conserves_the_total_on_random_edges(seed):
    rng = np.random.default_rng(seed)
    groups = []
    for k in range(4):
        edges = np.sort(rng.uniform(-3, 3, size=rng.integers(2, 12)))
        counts = rng.integers(0, 100, size=(3, edges.size - 1))
        groups.append((edges.tolist(), [10 * k, 10 * k + 1, 10 * k + 2], counts.tolist()))
    merged = merge_histograms(groups)
    assert merged["edges"] == groups[-1][0]  # the latest step's edges
    assert (merged["step_from"], merged["step_to"]) == (0, 32)
    assert sum(merged["counts"]) == sum(np.sum(g[2]) for g in groups)
    assert all(isinstance(c, int) and c >= 0 for c in merged["counts"])


def test_merge_leaves_malformed_rows_out():
    good = ([-1.0, 1.0], [0], [[4]])
    assert merge_histograms([good, ([1.0, 0.0], [1], [[9]])])["counts"] == [4]  # decreasing edges
    assert merge_histograms([good, ([0.0, None], [2], [[9]])])["counts"] == [4]  # NaN edge
    assert merge_histograms([([-1.0, 1.0], [0, 1, 2], [[4], [None], [1, 2]])])["counts"] == [4]
    assert merge_histograms([([1.0, 0.0], [0], [[1]])]) is None
