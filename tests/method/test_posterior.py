"""Exact posteriors (docs/method.md 1, 3): Gaussian-mixture and finite-set oracles against Monte Carlo, brute
force and hand-computed limits; the GaussianMixture dataset's sampling, seeding and validation."""
from __future__ import annotations

import math

import pytest
import torch

from mfsweep.data.gmm import EmpiricalPosterior, GaussianMixture, three_mode_mixture
from mfsweep.method.posterior import (
    empirical_conditional_covariance,
    empirical_marginal_velocity,
    empirical_sigma2,
    gmm_conditional_covariance,
    gmm_marginal_velocity,
    gmm_sigma2,
)

F64 = torch.float64


def _mixture(d: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A mixture with unequal variances and weights, so the per-component terms are all exercised."""
    g = torch.Generator().manual_seed(d)
    means = 1.5 * torch.randn(3, d, generator=g, dtype=F64)
    return means, torch.tensor([0.04, 0.25, 0.6], dtype=F64), torch.tensor([0.5, 0.3, 0.2], dtype=F64)


def _sample_mixture(means, variances, weights, n, g):
    k = torch.multinomial(weights, n, replacement=True, generator=g)
    return means[k] + variances[k].sqrt()[:, None] * torch.randn(n, means.shape[1], generator=g, dtype=F64)


@pytest.mark.parametrize("d, t", [(2, 0.3), (2, 0.7), (4, 0.75)])
def test_gmm_velocity_and_covariance_match_importance_sampling(d, t):
    """E[v_c | z_t = z] by self-normalised importance sampling: x from the mixture, weight p(z | x) =
    N(z; (1 - t) x, t^2 I); given x the path fixes v_c = (z - x) / t."""
    means, variances, weights = _mixture(d)
    g = torch.Generator().manual_seed(1)
    x = _sample_mixture(means, variances, weights, 400_000, g)
    z = (1 - t) * _sample_mixture(means, variances, weights, 4, g) + t * torch.randn(4, d, generator=g, dtype=F64)
    v = gmm_marginal_velocity(z, t, means, variances, weights)
    cov = gmm_conditional_covariance(z, t, means, variances, weights)
    for i in range(z.shape[0]):
        logw = -((z[i] - (1 - t) * x).pow(2).sum(-1)) / (2 * t**2)
        w = torch.softmax(logw, 0)
        v_c = (z[i] - x) / t
        v_mc = w @ v_c
        centred = v_c - v_mc
        cov_mc = (w[:, None] * centred).T @ centred
        ess = 1 / w.pow(2).sum()
        assert ess > 2000, "importance sampler too degenerate for this check"
        se = (w[:, None] * centred).pow(2).sum(0).sqrt()          # delta-method SE of the ratio estimate
        torch.testing.assert_close(v[i], v_mc, atol=float(6 * se.max()), rtol=0)
        torch.testing.assert_close(cov[i], cov_mc, atol=0.025 * float(cov_mc.diagonal().mean()), rtol=0)


def test_gmm_single_component_closed_form():
    """K = 1: v = (t (z - m) - (1 - t) s^2 z) / tau^2 and Sigma = s^2 / tau^2 I, tau^2 = (1 - t)^2 s^2 + t^2."""
    m, s2 = torch.tensor([[0.5, -1.0, 2.0]], dtype=F64), 0.3
    z, t = torch.tensor([[1.0, 0.2, -0.4]], dtype=F64), 0.35
    tau2 = (1 - t) ** 2 * s2 + t**2
    args = (m, torch.tensor([s2], dtype=F64), torch.ones(1, dtype=F64))
    expected = (t * (z - m) - (1 - t) * s2 * z) / tau2
    torch.testing.assert_close(gmm_marginal_velocity(z, t, *args), expected)
    torch.testing.assert_close(gmm_conditional_covariance(z, t, *args)[0], s2 / tau2 * torch.eye(3, dtype=F64))
    torch.testing.assert_close(gmm_sigma2(z, t, *args), torch.tensor([s2 / tau2], dtype=F64))


def test_gmm_endpoints():
    """t = 0: z = x, so v = E[e - x | x] = -z and Sigma = Cov[e] = I. t = 1: z = e, so v = z - E[x] and
    Sigma = Cov[x] = sum_k pi_k (s_k^2 I + (m_k - mbar)(m_k - mbar)^T)."""
    means, variances, weights = _mixture(3)
    z = torch.randn(5, 3, generator=torch.Generator().manual_seed(0), dtype=F64)
    torch.testing.assert_close(gmm_marginal_velocity(z, 0.0, means, variances, weights), -z)
    eye = torch.eye(3, dtype=F64)
    torch.testing.assert_close(gmm_conditional_covariance(z, 0.0, means, variances, weights), eye.expand(5, 3, 3))
    mbar = weights @ means
    torch.testing.assert_close(gmm_marginal_velocity(z, 1.0, means, variances, weights), z - mbar)
    c = means - mbar
    cov_x = (weights[:, None, None] * (variances[:, None, None] * eye + c[:, :, None] * c[:, None, :])).sum(0)
    torch.testing.assert_close(gmm_conditional_covariance(z, 1.0, means, variances, weights), cov_x.expand(5, 3, 3))
    torch.testing.assert_close(gmm_sigma2(z, 1.0, means, variances, weights), cov_x.trace().expand(5) / 3)


def _brute_force(z, t, points):
    """Per z and per point in float64 Python arithmetic: softmax weights, v = sum_i w_i (z - x_i) / t and
    Sigma = sum_i w_i (v_i - v)(v_i - v)^T."""
    z, points = z.double().tolist(), points.double().tolist()
    vs, covs = [], []
    for zi in z:
        logits = [-sum((a - (1 - t) * b) ** 2 for a, b in zip(zi, x)) / (2 * t**2) for x in points]
        top = max(logits)
        w = [math.exp(lg - top) for lg in logits]
        total = sum(w)
        w = [wi / total for wi in w]
        v_i = [[(a - b) / t for a, b in zip(zi, x)] for x in points]
        v = [sum(wi * vi[k] for wi, vi in zip(w, v_i)) for k in range(len(zi))]
        dims = range(len(zi))
        cov = [[sum(wi * (vi[a] - v[a]) * (vi[b] - v[b]) for wi, vi in zip(w, v_i)) for b in dims] for a in dims]
        vs.append(v)
        covs.append(cov)
    return torch.tensor(vs, dtype=F64), torch.tensor(covs, dtype=F64)


@pytest.mark.parametrize("t", [0.05, 0.4, 0.9])
@pytest.mark.parametrize("chunk", [7, 2048])
def test_empirical_posterior_matches_brute_force(t, chunk):
    g = torch.Generator().manual_seed(3)
    points = torch.randn(40, 3, generator=g, dtype=F64)
    e, off_path = torch.randn(2, 6, 3, generator=g, dtype=F64)
    z = (1 - t) * points[:6] + t * e + 0.3 * off_path
    v_bf, cov_bf = _brute_force(z, t, points)
    torch.testing.assert_close(empirical_marginal_velocity(z, t, points, chunk), v_bf)
    torch.testing.assert_close(empirical_conditional_covariance(z, t, points, chunk), cov_bf)
    torch.testing.assert_close(empirical_sigma2(z, t, points, chunk), cov_bf.diagonal(dim1=-2, dim2=-1).mean(-1))
    v32 = empirical_marginal_velocity(z.float(), t, points.float(), chunk)
    assert v32.dtype == torch.float32
    torch.testing.assert_close(v32, v_bf.float(), atol=1e-4, rtol=1e-4)


def test_empirical_endpoints():
    """Near t = 0 on the path of point j the posterior is a point mass: v = e - x_j, Sigma = 0 (float64 holds
    this at t = 1e-4). At t = 1 all points are equally likely: v = z - mean, Sigma = population Cov[x]."""
    g = torch.Generator().manual_seed(4)
    points = torch.randn(500, 4, generator=g, dtype=F64)
    e = torch.randn(3, 4, generator=g, dtype=F64)
    t = 1e-4
    z = (1 - t) * points[[5, 17, 300]] + t * e
    v = empirical_marginal_velocity(z, t, points, 64)
    torch.testing.assert_close(v, e - points[[5, 17, 300]], rtol=1e-6, atol=1e-6)
    assert float(empirical_sigma2(z, t, points, 64).abs().max()) < 1e-6
    zz = torch.randn(3, 4, generator=g, dtype=F64)
    torch.testing.assert_close(empirical_marginal_velocity(zz, 1.0, points, 64), zz - points.mean(0))
    cov_x = torch.cov(points.T, correction=0)
    torch.testing.assert_close(empirical_conditional_covariance(zz, 1.0, points, 64), cov_x.expand(3, 4, 4))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("t", [1e-4, 0.5, 1 - 1e-4])
def test_oracles_finite_and_dtype_preserving(dtype, t):
    gm = GaussianMixture(8, 5, scale=0.1)
    emp = EmpiricalPosterior(gm.sample(300, torch.Generator().manual_seed(0)), chunk=128)
    g = torch.Generator().manual_seed(5)
    z = torch.cat([gm.sample(16, g), 5 * torch.randn(16, 8, generator=g)]).to(dtype)    # on and off the data
    tt = torch.full((32,), t, dtype=dtype)
    for oracle in (gm, emp):
        v, cov, s2 = oracle.marginal_velocity(z, tt), oracle.conditional_covariance(z, tt), oracle.sigma2(z, tt)
        assert v.shape == (32, 8) and cov.shape == (32, 8, 8) and s2.shape == (32,)
        assert v.dtype == cov.dtype == s2.dtype == dtype
        assert torch.isfinite(v).all() and torch.isfinite(cov).all() and torch.isfinite(s2).all()
        assert (s2 >= 0).all()
    v64 = gm.marginal_velocity(z.double(), t)
    torch.testing.assert_close(gm.marginal_velocity(z, tt).double(), v64, rtol=1e-3, atol=1e-3 * float(v64.abs().max()))


def test_sigma2_is_trace_over_d_and_batch_shapes_broadcast():
    gm = GaussianMixture(4, 3, scale=0.3, means_seed=2)
    emp = EmpiricalPosterior(gm.sample(200, torch.Generator().manual_seed(0)))
    g = torch.Generator().manual_seed(6)
    z = torch.randn(2, 5, 4, generator=g, dtype=F64)                   # (E, B, d), as the ensemble calls it
    t = torch.rand(2, 5, generator=g, dtype=F64) * 0.9 + 0.05
    for oracle in (gm, emp):
        cov = oracle.conditional_covariance(z, t)
        assert cov.shape == (2, 5, 4, 4)
        torch.testing.assert_close(oracle.sigma2(z, t), cov.diagonal(dim1=-2, dim2=-1).mean(-1))
        torch.testing.assert_close(cov, cov.transpose(-1, -2))
        flat = oracle.marginal_velocity(z.reshape(10, 4), t.reshape(10))
        torch.testing.assert_close(oracle.marginal_velocity(z, t), flat.reshape(2, 5, 4))
        t_full = torch.full((2, 5), 0.4, dtype=F64)
        torch.testing.assert_close(oracle.marginal_velocity(z, 0.4), oracle.marginal_velocity(z, t_full))


def test_gmm_sample_shapes_seeding_and_moments():
    gm = GaussianMixture(8, 4, scale=0.2, spread=1.0, means_seed=0)
    a = gm.sample(20_000, torch.Generator().manual_seed(1))
    assert a.shape == (20_000, 8) and a.dtype == torch.float32
    assert torch.equal(a, gm.sample(20_000, torch.Generator().manual_seed(1)))
    assert not torch.equal(a, gm.sample(20_000, torch.Generator().manual_seed(2)))
    assert torch.equal(GaussianMixture(8, 4, scale=0.2, means_seed=0).means, gm.means)
    assert not torch.equal(GaussianMixture(8, 4, scale=0.2, means_seed=1).means, gm.means)
    assert gm.name == "dgmm" and gm.dim == 8
    # the samples follow the mixture the oracle describes: Cov[x] is the oracle's Sigma at t = 1
    cov_x = gm.conditional_covariance(torch.zeros(1, 8, dtype=F64), 1.0)[0]
    se = math.sqrt(float(cov_x.diagonal().max()) / 20_000)
    torch.testing.assert_close(a.double().mean(0), gm.weights @ gm.means, atol=5 * se, rtol=0)
    torch.testing.assert_close(torch.cov(a.double().T), cov_x, atol=0.1 * float(cov_x.diagonal().mean()), rtol=0)


def test_three_mode_mixture():
    gm = three_mode_mixture()
    assert gm.dim == 2 and gm.n_components == 3
    torch.testing.assert_close(gm.means.norm(dim=1), torch.full((3,), 2.0, dtype=F64))
    torch.testing.assert_close(gm.means.sum(0), torch.zeros(2, dtype=F64))
    torch.testing.assert_close(gm.weights, torch.full((3,), 1 / 3, dtype=F64))


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"dim": 0, "n_components": 3}, "dim"),
        ({"dim": 2.5, "n_components": 3}, "dim"),
        ({"dim": True, "n_components": 3}, "dim"),
        ({"dim": 2, "n_components": 0}, "n_components"),
        ({"dim": 2, "n_components": 3, "scale": 0.0}, "scale"),
        ({"dim": 2, "n_components": 3, "scale": -1.0}, "scale"),
        ({"dim": 2, "n_components": 3, "scale": float("nan")}, "scale"),
        ({"dim": 2, "n_components": 3, "spread": -0.5}, "spread"),
        ({"dim": 2, "n_components": 3, "means_seed": 1.5}, "means_seed"),
    ],
)
def test_gaussian_mixture_rejects_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=f"^{name} must be"):
        GaussianMixture(**kwargs)


def test_other_bad_inputs_name_the_argument():
    gm = GaussianMixture(2, 3)
    with pytest.raises(ValueError, match="^n must be"):
        gm.sample(-1, torch.Generator())
    with pytest.raises(ValueError, match="^points must be"):
        EmpiricalPosterior(torch.zeros(5))
    with pytest.raises(ValueError, match="^points must be finite"):
        EmpiricalPosterior(torch.tensor([[0.0, float("nan")]]))
    means, variances, weights = _mixture(3)
    with pytest.raises(ValueError, match="^means must be"):
        gmm_marginal_velocity(torch.zeros(4, 2, dtype=F64), 0.5, means, variances, weights)
    with pytest.raises(ValueError, match="^variances must be"):
        gmm_marginal_velocity(torch.zeros(4, 3, dtype=F64), 0.5, means, variances[:2], weights)
    with pytest.raises(ValueError, match="^weights must be"):
        GaussianMixture.from_means(means, 0.1, torch.tensor([1.0, -1.0, 1.0]))
