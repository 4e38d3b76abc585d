"""Exact draws of x | z_t (docs/method.md 1, 3; used by the matrix-form alpha* of docs/method.md 4): their v_c = (z - x) / t
has the oracle's mean v and covariance Sigma (Gaussian mixture), and the empirical sampler picks the set's
points with the brute-force posterior weights; the finite toy set's oracle against brute force."""
from __future__ import annotations

import math

import pytest
import torch

from mfsweep.data import make_vector_dataset
from mfsweep.data.finite import FiniteSet
from mfsweep.data.gmm import EmpiricalPosterior, GaussianMixture
from mfsweep.data.toy import ToyDataset

F64 = torch.float64


@pytest.mark.parametrize("t", [0.05, 0.5, 0.95])
def test_gmm_posterior_draws_have_the_oracle_mean_and_covariance(t):
    gm = GaussianMixture.from_means(torch.tensor([[0.0, 1.0, 0.5], [1.2, -0.8, 0.0], [-1.0, -0.5, 1.0]], dtype=F64),
                                    scale=0.4, weights=torch.tensor([0.5, 0.3, 0.2], dtype=F64))
    g = torch.Generator().manual_seed(0)
    # points between modes (both posteriors matter) and on one
    z = torch.tensor([[0.6, 0.1, 0.25], [0.0, 1.0, 0.5], [-0.3, 0.2, 0.6]], dtype=F64) * (1 - t) + 0.3 * t
    n = 200_000
    x = gm.sample_posterior(z, t, n, g)
    assert x.shape == (3, n, 3) and x.dtype == F64
    v_c = (z[:, None, :] - x) / t
    v, cov = gm.marginal_velocity(z, t), gm.conditional_covariance(z, t)
    for i in range(3):
        se = (cov[i].diagonal() / n).sqrt()
        torch.testing.assert_close(v_c[i].mean(0), v[i], atol=float(5 * se.max()), rtol=0)
        emp = torch.cov(v_c[i].T)
        torch.testing.assert_close(emp, cov[i], atol=0.03 * float(cov[i].diagonal().max()), rtol=0)


def test_gmm_posterior_draws_near_the_ends_and_reproducibility():
    """t -> 0: x | z is a point mass at z; t = 1: x ~ p_data (z says nothing)."""
    gm = GaussianMixture(4, 3, scale=0.2, means_seed=1)
    z = torch.randn(5, 4, generator=torch.Generator().manual_seed(0), dtype=F64)
    near = gm.sample_posterior(z, 1e-6, 10, torch.Generator().manual_seed(1))
    torch.testing.assert_close(near, z[:, None, :].expand(5, 10, 4), atol=1e-5, rtol=0)
    a = gm.sample_posterior(z, 1.0, 40_000, torch.Generator().manual_seed(2))
    torch.testing.assert_close(a.mean(1), (gm.weights @ gm.means).expand(5, 4), atol=0.03, rtol=0)
    b = gm.sample_posterior(z, 1.0, 40_000, torch.Generator().manual_seed(2))
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="^n must be a positive int"):
        gm.sample_posterior(z, 0.5, 0, torch.Generator())


def _weights(z: torch.Tensor, t: float, points: torch.Tensor) -> torch.Tensor:
    """Posterior weights over the points by brute force, per z, in Python floats."""
    out = []
    for zi in z.tolist():
        logits = [-sum((a - (1 - t) * b) ** 2 for a, b in zip(zi, x)) / (2 * t**2) for x in points.tolist()]
        top = max(logits)
        w = [math.exp(lg - top) for lg in logits]
        out.append([wi / sum(w) for wi in w])
    return torch.tensor(out, dtype=F64)


@pytest.mark.parametrize("chunk", [3, 2048])
def test_empirical_posterior_draws_follow_brute_force_weights(chunk):
    g = torch.Generator().manual_seed(5)
    points = torch.randn(12, 2, generator=g, dtype=F64)
    t = 0.6
    z = (1 - t) * points[[0, 5]] + t * torch.randn(2, 2, generator=g, dtype=F64)
    emp = EmpiricalPosterior(points, chunk=chunk)
    n = 60_000
    x = emp.sample_posterior(z, t, n, torch.Generator().manual_seed(6))
    assert x.shape == (2, n, 2)
    index = (x[:, :, None, :] == points[None, None]).all(-1).double().argmax(-1)    # which point each draw is
    assert bool((points[index] == x).all())
    freq = torch.stack([torch.bincount(index[i], minlength=12) for i in range(2)]).double() / n
    w = _weights(z, t, points)
    se = (w * (1 - w) / n).sqrt()
    assert bool(((freq - w).abs() <= 5 * se + 1e-12).all()), (freq, w)


def test_finite_toy_set_trains_on_its_points_and_its_oracle_is_brute_force():
    base = ToyDataset("two_moons")
    fs = make_vector_dataset("two_moons", dim=2, finite_size=30, finite_seed=4)
    assert isinstance(fs, FiniteSet) and fs.name == "two_moons" and fs.size == 30
    # drawn once, from its own seed: the same set whatever the cell's generator
    torch.testing.assert_close(fs.points, base.sample(30, torch.Generator().manual_seed(4)).double())
    x = fs.sample(500, torch.Generator().manual_seed(9))
    assert x.dtype == torch.float32 and bool((x[:, None, :].double() == fs.points[None]).all(-1).any(-1).all())
    assert len({tuple(p) for p in x.tolist()}) == 30                   # uniform over 30 points: all are hit
    g = torch.Generator().manual_seed(1)
    for t in (0.1, 0.5, 0.9):
        z = (1 - t) * x[:4].double() + t * torch.randn(4, 2, generator=g, dtype=F64)
        w = _weights(z, t, fs.points)
        v_bf = ((z[:, None, :] - fs.points[None]) / t * w[..., None]).sum(1)
        torch.testing.assert_close(fs.marginal_velocity(z, t), v_bf)
        torch.testing.assert_close(fs.marginal_velocity(z.float(), t), v_bf.float(), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"name": "two_moons", "finite_size": 0}, "dataset.finite_size must be"),
        ({"name": "two_moons", "finite_size": 10, "finite_seed": -1}, "dataset.finite_seed must be"),
        ({"name": "two_moons", "dim": 3}, "dataset.dim must be 2"),
        ({"name": "two_moons", "n_components": 3}, "dataset.n_components is not a key"),
        ({"name": "spiral_galaxy"}, "dataset.name must be one of"),
    ],
)
def test_make_vector_dataset_rejects_bad_keys(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_vector_dataset(**kwargs)
