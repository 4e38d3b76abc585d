"""SW1/SW2 against POT's own computation."""
from __future__ import annotations

import numpy as np
import ot
import pytest

from mfsweep.metrics.sliced import projections, sliced_wasserstein


@pytest.mark.parametrize("dim", [2, 5])
def test_matches_pot(dim):
    rng = np.random.RandomState(0)
    x, y = rng.randn(700, dim), rng.randn(700, dim) * 1.5 + 0.3
    got = sliced_wasserstein(x, y, n_projections=64, seed=7)
    p = projections(dim, 64, 7)
    assert got["sw1"] == pytest.approx(ot.sliced_wasserstein_distance(x, y, projections=p, p=1), rel=1e-5)
    assert got["sw2"] == pytest.approx(ot.sliced_wasserstein_distance(x, y, projections=p, p=2), rel=1e-5)


def test_projections_are_fixed_by_seed_and_unit_norm():
    a, b, c = projections(3, 10, 1), projections(3, 10, 1), projections(3, 10, 2)
    assert np.array_equal(a, b) and not np.allclose(a, c)
    np.testing.assert_allclose(np.linalg.norm(a, axis=0), 1.0)


def test_self_distance_is_zero_and_shift_is_seen():
    x = np.random.RandomState(1).randn(500, 2)
    assert sliced_wasserstein(x, x, 50, 0) == {"sw1": 0.0, "sw2": 0.0}
    shifted = sliced_wasserstein(x + np.array([1.0, 0.0]), x, 200, 0)
    # A pure shift s moves every 1-D projection by |s . theta|: SW1 = E|cos| = 2/pi for unit s in 2-D.
    assert shifted["sw1"] == pytest.approx(2 / np.pi, rel=0.05)
    assert shifted["sw2"] == pytest.approx(np.sqrt(0.5), rel=0.05)


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="same shape"):
        sliced_wasserstein(np.zeros((3, 2)), np.zeros((4, 2)), 5, 0)
