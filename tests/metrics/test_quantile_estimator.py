"""The split quantile estimator (docs/method.md 5) against POT, a closed form, and its own standard error."""
from __future__ import annotations

import numpy as np
import ot
import pytest

from mfsweep.metrics.sliced import directions, reference_quantiles, split_estimate, summarise_splits, sw_to_quantiles
from mfsweep.report.evaluation import paired_eval_se


@pytest.mark.parametrize("dim", [2, 5])
def test_one_point_per_block_is_pots_sample_against_sample(dim):
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((700, dim)), rng.standard_normal((700, dim)) * 1.5 + 0.3
    p = directions(dim, 64, rng)
    sw1, sw2 = sw_to_quantiles(x[None], p, reference_quantiles(y, p, 700))
    assert sw1[0] == pytest.approx(ot.sliced_wasserstein_distance(x, y, projections=p, p=1), rel=1e-5)
    assert sw2[0] == pytest.approx(ot.sliced_wasserstein_distance(x, y, projections=p, p=2), rel=1e-5)


def test_directions_are_unit_and_spread():
    rng = np.random.default_rng(1)
    p2 = directions(2, 8, rng)
    angles = np.sort(np.arctan2(p2[1], p2[0]) % np.pi)
    np.testing.assert_allclose(np.diff(angles), np.pi / 8, atol=1e-12)  # evenly spaced, one rotation
    p5 = directions(5, 10, rng)
    np.testing.assert_allclose(p5[:, :5].T @ p5[:, :5], np.eye(5), atol=1e-12)  # an orthogonal block


def _estimate(n, shift, rng, L=16, ratio=4, splits=1, noise=None):
    """SW between N(shift, I) (from `noise` if given) and N(0, I) in 2-D, and the exact value on its directions."""
    parts = np.array_split(np.arange(n), splits)
    dirs = [directions(2, L, rng) for _ in parts]
    pools = [rng.standard_normal((ratio * len(p), 2)) for p in parts]
    z = rng.standard_normal((n, 2)) if noise is None else noise
    points = np.stack([z + np.array([s, 0.0]) for s in np.atleast_1d(shift)])
    est = split_estimate([points[:, p] for p in parts], pools, dirs)
    # Per direction theta the projections are N(shift . theta, 1) and N(0, 1): W1 = |shift . theta|.
    exact = np.mean([np.abs(np.asarray([np.atleast_1d(shift)[0], 0.0]) @ d).mean() for d in dirs])
    return est, exact


def test_converges_to_the_closed_form_at_rate_one_over_root_n():
    """docs/method.md 5: the error's RMS falls as N^(-1/2); 16x the points, a quarter of the error."""
    rng = np.random.default_rng(2)
    rms = {}
    for n in (500, 8000):
        errors = [(lambda e: e[0]["sw1"][0, 0] - e[1])(_estimate(n, 1.0, rng)) for _ in range(24)]
        rms[n] = np.sqrt(np.mean(np.square(errors)))
    assert 2.5 < rms[500] / rms[8000] < 6.5
    assert rms[8000] < 0.02


def test_reported_se_of_a_paired_difference_matches_its_spread_over_draws():
    """Two generators sharing every draw (common random numbers): the SE from the K splits against the SD of
    the difference over 40 independent evaluations (SD of that SD: about 11%)."""
    rng = np.random.default_rng(3)
    diffs, ses = [], []
    for _ in range(40):
        est, _ = _estimate(2000, [0.3, 0.4], rng, splits=8)
        a, b = ({"eval": {"splits": {"sw1": est["sw1"][j].tolist()}}} for j in (0, 1))
        diffs.append(summarise_splits(est["sw1"][0])[0] - summarise_splits(est["sw1"][1])[0])
        ses.append(paired_eval_se([(a, b)], "sw1"))
    ratio = np.std(diffs, ddof=1) / np.sqrt(np.mean(np.square(ses)))
    assert 0.7 < ratio < 1.4
