"""Exact posteriors (docs/method.md 1, 3): Gaussian-mixture and finite-set oracles against Monte Carlo, brute
force and hand-computed limits; the GaussianMixture dataset's sampling, seeding and validation."""
from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch

from mfsweep.data.gmm import EmpiricalPosterior, GaussianMixture, three_mode_mixture
from mfsweep.method.posterior import (
    _empirical_logit_factors,
    _empirical_moments,
    _flat_inputs,
    empirical_conditional_covariance,
    empirical_marginal_velocity,
    empirical_posterior_sample,
    empirical_sigma2,
    gmm_conditional_covariance,
    gmm_marginal_velocity,
    gmm_posterior_sample,
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


# --- written against mutants and bugs that once survived the suite (docs/testing.md, "Where the mutant tests live") ---


def _exact(message: str) -> str:
    return "^" + re.escape(message) + "$"


def _np_gmm(z: np.ndarray, t: np.ndarray, means: np.ndarray, s2: np.ndarray, weights: np.ndarray):
    """Per row of z (n, d) at time t (n,): component posteriors w (n, K) and the Gaussian conditional
    x | z, k ~ N(mu (n, K, d), var (n, K) I), from z | k ~ N((1 - t) m_k, tau_k^2 I), tau_k^2 = (1-t)^2 s_k^2 + t^2."""
    d = z.shape[1]
    t = t[:, None]
    tau2 = (1 - t) ** 2 * s2[None] + t**2                                           # (n, K)
    sq = ((z[:, None, :] - (1 - t)[..., None] * means[None]) ** 2).sum(-1)
    logw = np.log(weights / weights.sum())[None] - 0.5 * d * np.log(tau2) - 0.5 * sq / tau2
    w = np.exp(logw - logw.max(1, keepdims=True))
    w /= w.sum(1, keepdims=True)
    mu = (t[..., None] ** 2 * means[None] + ((1 - t) * s2[None])[..., None] * z[:, None, :]) / tau2[..., None]
    var = s2[None] * t**2 / tau2
    return w, mu, var


def _np_empirical_weights(z: np.ndarray, t: np.ndarray, points: np.ndarray) -> np.ndarray:
    """softmax_i(-||z - (1 - t) x_i||^2 / (2 t^2)) per row of z (n, d), t (n,)."""
    logits = -((z[:, None, :] - (1 - t)[:, None, None] * points[None]) ** 2).sum(-1) / (2 * t[:, None] ** 2)
    w = np.exp(logits - logits.max(1, keepdims=True))
    return w / w.sum(1, keepdims=True)


def _np_mixture():
    means = np.array([[0.0, 1.0, 0.5], [1.2, -0.8, 0.0], [-1.0, -0.5, 1.0]])
    return means, np.array([0.05, 0.3, 0.7]), np.array([0.5, 0.3, 0.2])


def _tensors(*arrays, dtype=F64):
    return tuple(torch.tensor(a, dtype=dtype) for a in arrays)


def test_check_mixture_messages_in_full():
    """z of shape (2, 5, 3): d is the last axis (3), not axis 1 or -2 (5)."""
    means, s2, weights = _tensors(*_np_mixture())
    z = torch.zeros(2, 5, 3, dtype=F64)
    with pytest.raises(ValueError, match=_exact("means must be (K, d) with d = 3, got (3, 2)")):
        gmm_marginal_velocity(z, 0.5, means[:, :2], s2, weights)
    with pytest.raises(ValueError, match=_exact("variances must be (K,) = (3,), got (2,)")):
        gmm_conditional_covariance(z, 0.5, means, s2[:2], weights)
    with pytest.raises(ValueError, match=_exact("weights must be (K,) = (3,), got (2,)")):
        gmm_sigma2(z, 0.5, means, s2, weights[:2])
    with pytest.raises(ValueError, match=_exact("weights must be (K,) = (3,), got (3, 1)")):
        gmm_posterior_sample(z, 0.5, means, s2, weights[:, None], 2, torch.Generator())


def test_flat_inputs_refuses_a_scalar_z_and_takes_a_single_point():
    with pytest.raises(ValueError, match=_exact("z must have shape (..., d), got ()")):
        _flat_inputs(torch.tensor(1.0), 0.5)
    zf, tf = _flat_inputs(torch.tensor([1.0, 2.0, 3.0]), 0.25)
    assert zf.shape == (1, 3) and tf.shape == (1,) and float(tf) == 0.25


@pytest.mark.parametrize("n, shown", [(0, "0"), (-2, "-2"), (True, "True"), (1.5, "1.5"), ("3", "'3'")])
def test_draw_count_messages_in_full(n, shown):
    means, s2, weights = _tensors(*_np_mixture())
    points = means.clone()
    z = torch.zeros(2, 3, dtype=F64)
    for call in (lambda: gmm_posterior_sample(z, 0.5, means, s2, weights, n, torch.Generator()),
                 lambda: empirical_posterior_sample(z, 0.5, points, n, torch.Generator())):
        with pytest.raises(ValueError, match=_exact(f"n must be a positive int, got {shown}")):
            call()


def test_one_draw_is_allowed():
    means, s2, weights = _tensors(*_np_mixture())
    z = torch.zeros(2, 3, dtype=F64)
    assert gmm_posterior_sample(z, 0.5, means, s2, weights, 1, torch.Generator()).shape == (2, 1, 3)
    assert empirical_posterior_sample(z, 0.5, means, 1, torch.Generator()).shape == (2, 1, 3)


def test_empirical_points_and_chunk_messages_in_full():
    """z of shape (2, 5, 3): d = 3 in the message, not 5."""
    z = torch.zeros(2, 5, 3, dtype=F64)
    for points, shape in ((torch.zeros(5, 2), "(5, 2)"), (torch.zeros(3), "(3,)"), (torch.zeros(4, 3, 1), "(4, 3, 1)"),
                          (torch.zeros(0, 3), "(0, 3)")):
        msg = _exact(f"points must be (N, d) with N >= 1 and d = 3, got {shape}")
        for call in (lambda: empirical_marginal_velocity(z, 0.5, points),
                     lambda: empirical_posterior_sample(z, 0.5, points, 2, torch.Generator())):
            with pytest.raises(ValueError, match=msg):
                call()
    points = torch.zeros(4, 3, dtype=F64)
    for chunk in (0, -1):
        with pytest.raises(ValueError, match=_exact(f"chunk must be a positive int, got {chunk}")):
            empirical_sigma2(z, 0.5, points, chunk)


def test_a_single_point_and_a_chunk_of_one_are_valid():
    """One point: the posterior is that point, v = (z - x) / t and Sigma = 0 (docs/method.md 3)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 3, generator=g, dtype=F64)
    z = torch.randn(4, 3, generator=g, dtype=F64)
    torch.testing.assert_close(empirical_marginal_velocity(z, 0.4, x), (z - x) / 0.4, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(empirical_sigma2(z, 0.4, x, chunk=1), torch.zeros(4, dtype=F64))
    draws = empirical_posterior_sample(z, 0.4, x, 3, torch.Generator().manual_seed(1))
    assert torch.equal(draws, x.expand(4, 3, 3))
    points = torch.randn(6, 3, generator=g, dtype=F64)
    zn, tn = z.numpy(), np.full(4, 0.4)
    w = _np_empirical_weights(zn, tn, points.numpy())
    v = (zn - w @ points.numpy()) / 0.4
    torch.testing.assert_close(empirical_marginal_velocity(z, 0.4, points, chunk=1), torch.tensor(v),
                               rtol=1e-10, atol=1e-10)


def test_results_take_zs_dtype_whatever_the_parameters_and_time_dtypes():
    """float32 z with float64 mixture parameters and a float64 time tensor: float32 results, equal to the
    float64 computation to float32 precision."""
    means, s2, weights = _np_mixture()
    g = torch.Generator().manual_seed(2)
    z64 = torch.randn(4, 3, generator=g, dtype=F64)
    t64 = torch.tensor([0.2, 0.4, 0.6, 0.8], dtype=F64)
    params64 = _tensors(means, s2, weights)
    for fn in (gmm_marginal_velocity, gmm_conditional_covariance, gmm_sigma2):
        ref = fn(z64, t64, *params64)
        for params in (params64, _tensors(means, s2, weights, dtype=torch.float32)):
            out = fn(z64.float(), t64, *params)
            assert out.dtype == torch.float32, fn.__name__
            torch.testing.assert_close(out, ref.float(), rtol=1e-4, atol=1e-5)
    x = gmm_posterior_sample(z64.float(), t64, *params64, 3, torch.Generator().manual_seed(0))
    assert x.dtype == torch.float32
    points = torch.tensor(means, dtype=F64)
    x = empirical_posterior_sample(z64.float(), t64, points, 3, torch.Generator().manual_seed(0))
    assert x.dtype == torch.float32
    assert bool((x[:, :, None, :] == points.float()[None, None]).all(-1).any(-1).all())
    for fn in (empirical_marginal_velocity, empirical_conditional_covariance, empirical_sigma2):
        assert fn(z64.float(), t64, points).dtype == torch.float32


def test_results_do_not_depend_on_the_default_dtype():
    """Under torch.set_default_dtype(float64), float32 inputs still give float32 results (the time and the
    identity of the covariance are made in z's dtype, not the default one)."""
    means, s2, weights = _tensors(*_np_mixture(), dtype=torch.float32)
    z = torch.randn(4, 3, generator=torch.Generator().manual_seed(3))
    expected = {fn: fn(z, 0.3, means, s2, weights) for fn in
                (gmm_marginal_velocity, gmm_conditional_covariance, gmm_sigma2)}
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        for fn, ref in expected.items():
            out = fn(z, 0.3, means, s2, weights)
            assert out.dtype == torch.float32, fn.__name__
            torch.testing.assert_close(out, ref)
    finally:
        torch.set_default_dtype(old)


def test_gmm_velocity_at_a_python_float_time_is_exact_in_float64():
    """t = 0.1 as a Python float is used in z's dtype (float64), not rounded to float32 first: the K = 1
    closed form v = (t (z - m) - (1 - t) s^2 z) / ((1 - t)^2 s^2 + t^2) holds to 1e-13."""
    m, s2 = np.array([[0.5, -1.0, 2.0]]), 0.3
    z = np.array([[1.0, 0.2, -0.4], [-2.0, 0.7, 0.1]])
    t = 0.1
    v = (t * (z - m) - (1 - t) * s2 * z) / ((1 - t) ** 2 * s2 + t**2)
    args = _tensors(m, np.array([s2]), np.array([1.0]))
    out = gmm_marginal_velocity(torch.tensor(z), t, *args)
    torch.testing.assert_close(out, torch.tensor(v), rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(gmm_sigma2(torch.tensor(z), t, *args),
                               torch.full((2,), s2 / ((1 - t) ** 2 * s2 + t**2), dtype=F64), rtol=1e-13, atol=1e-13)


def _replay_gmm(z: np.ndarray, t: np.ndarray, params, n: int, seed: int) -> torch.Tensor:
    """The documented draw order, replayed: the components from the posterior weights (one multinomial over
    all rows), then standard normal noise (rows, n, d), then x = mu_k + sqrt(var_k) * noise."""
    w, mu, var = _np_gmm(z, t, *params)
    g = torch.Generator().manual_seed(seed)
    k = torch.multinomial(torch.tensor(w), n, replacement=True, generator=g).numpy()
    noise = torch.randn(z.shape[0], n, z.shape[1], generator=g, dtype=F64).numpy()
    rows = np.arange(z.shape[0])[:, None]
    return torch.tensor(mu[rows, k] + np.sqrt(var[rows, k])[..., None] * noise)


def test_gmm_draws_replay_their_generator_for_any_batch_shape():
    """Batch (2, 5) in d = 3, per-row times: every draw equals the replay from a fresh generator of the same
    seed; the global RNG is untouched; another seed gives other draws."""
    params = _np_mixture()
    g = torch.Generator().manual_seed(4)
    z = torch.randn(2, 5, 3, generator=g, dtype=F64)
    t = torch.rand(2, 5, generator=g, dtype=F64) * 0.8 + 0.1
    tensors = _tensors(*params)
    state = torch.get_rng_state()
    x = gmm_posterior_sample(z, t, *tensors, 4, torch.Generator().manual_seed(7))
    assert torch.equal(torch.get_rng_state(), state)
    assert x.shape == (2, 5, 4, 3)
    expected = _replay_gmm(z.reshape(10, 3).numpy(), t.reshape(10).numpy(), params, 4, 7)
    torch.testing.assert_close(x, expected.reshape(2, 5, 4, 3), rtol=1e-12, atol=1e-12)
    assert not torch.equal(x, gmm_posterior_sample(z, t, *tensors, 4, torch.Generator().manual_seed(8)))
    single = gmm_posterior_sample(z[1, 2], float(t[1, 2]), *tensors, 4, torch.Generator().manual_seed(7))
    assert single.shape == (4, 3)
    torch.testing.assert_close(single, _replay_gmm(z[1, 2:3].numpy(), t[1, 2:3].numpy(), params, 4, 7)[0],
                               rtol=1e-12, atol=1e-12)


def test_gmm_draws_have_the_closed_form_posterior_moments():
    """E[x | z] = sum_k w_k mu_k and E[x_j^2 | z] = sum_k w_k (mu_kj^2 + var_k), from 40000 draws per row."""
    params = _np_mixture()
    z = np.array([[0.6, 0.1, 0.25], [-0.3, 0.2, 0.6]])
    t = np.array([0.5, 0.7])
    w, mu, var = _np_gmm(z, t, *params)
    n = 40_000
    x = gmm_posterior_sample(torch.tensor(z), torch.tensor(t), *_tensors(*params), n,
                             torch.Generator().manual_seed(9)).numpy()
    mean = (w[..., None] * mu).sum(1)
    second = (w[..., None] * (mu**2 + var[..., None])).sum(1)
    sd = np.sqrt(second - mean**2)
    assert np.all(np.abs(x.mean(1) - mean) <= 5 * sd / np.sqrt(n))
    assert np.all(np.abs((x**2).mean(1) - second) <= 0.03 * second)


def _points_and_queries(seed: int = 5):
    g = torch.Generator().manual_seed(seed)
    points = torch.randn(9, 3, generator=g, dtype=F64)
    z = torch.randn(2, 5, 3, generator=g, dtype=F64)
    t = torch.rand(2, 5, generator=g, dtype=F64) * 0.8 + 0.15
    return points, z, t


def test_empirical_logit_factors_against_numpy_logits():
    """query @ keys.T is the logit -||z - (1 - t) x_i||^2 / (2 t^2) plus ||z||^2 / (2 t^2), per row; z and t
    come back flattened in float64 from float32 inputs."""
    points, z, t = _points_and_queries()
    zf, tf, query, keys = _empirical_logit_factors(z.float(), t.float(), points.float(), chunk=4)
    assert zf.dtype == tf.dtype == query.dtype == keys.dtype == F64
    assert zf.shape == (10, 3) and tf.shape == (10,) and query.shape == (10, 4) and keys.shape == (9, 4)
    zn = z.float().double().reshape(10, 3).numpy()
    tn = t.float().double().reshape(10).numpy()
    xn = points.float().double().numpy()
    logits = -((zn[:, None, :] - (1 - tn)[:, None, None] * xn[None]) ** 2).sum(-1) / (2 * tn[:, None] ** 2)
    torch.testing.assert_close(query @ keys.T, torch.tensor(logits + (zn**2).sum(1)[:, None] / (2 * tn[:, None] ** 2)),
                               rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(zf, torch.tensor(zn), rtol=0, atol=0)
    torch.testing.assert_close(tf, torch.tensor(tn), rtol=0, atol=0)


@pytest.mark.parametrize("chunk", [1, 4, 2048, 10**6])
def test_empirical_moments_against_numpy_softmax_weights(chunk):
    """E[x | z], E[||x||^2 | z] and E[x x^T | z] as NumPy softmax-weighted sums, for chunks of one point, of
    some points, of all points and larger than the outer-product cap; and the public oracles built on them."""
    points, z, t = _points_and_queries()
    zn, tn, xn = z.reshape(10, 3).numpy(), t.reshape(10).numpy(), points.numpy()
    w = _np_empirical_weights(zn, tn, xn)
    mean = w @ xn
    norm2 = w @ (xn**2).sum(1)
    outer = np.einsum("ni,ij,ik->njk", w, xn, xn)
    for full in (False, True):
        zf, tf, xbar, m2, m_outer = _empirical_moments(z, t, points, chunk, full)
        torch.testing.assert_close(zf, torch.tensor(zn), rtol=0, atol=0)
        torch.testing.assert_close(tf, torch.tensor(tn), rtol=0, atol=0)
        torch.testing.assert_close(xbar, torch.tensor(mean), rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(m2, torch.tensor(norm2), rtol=1e-10, atol=1e-10)
        if full:
            torch.testing.assert_close(m_outer, torch.tensor(outer), rtol=1e-10, atol=1e-10)
        else:
            assert m_outer is None
    cov = (outer - mean[:, :, None] * mean[:, None, :]) / tn[:, None, None] ** 2
    torch.testing.assert_close(empirical_marginal_velocity(z, t, points, chunk),
                               torch.tensor((zn - mean) / tn[:, None]).reshape(2, 5, 3), rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(empirical_conditional_covariance(z, t, points, chunk),
                               torch.tensor(cov).reshape(2, 5, 3, 3), rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(empirical_sigma2(z, t, points, chunk),
                               torch.tensor(np.trace(cov, axis1=1, axis2=2) / 3).reshape(2, 5), rtol=1e-9, atol=1e-9)


def _replay_empirical(z: np.ndarray, t: np.ndarray, points: np.ndarray, n: int, seed: int, chunk: int) -> np.ndarray:
    """Gumbel-max replayed: for each chunk of `chunk` points in order, uniforms u (rows, n, chunk) from the
    generator in float64; the draw is the point maximising logit_i - log(-log u_i) over all points."""
    logits = -((z[:, None, :] - (1 - t)[:, None, None] * points[None]) ** 2).sum(-1) / (2 * t[:, None] ** 2)
    g = torch.Generator().manual_seed(seed)
    u = np.concatenate([torch.rand(z.shape[0], n, min(chunk, len(points) - s), generator=g, dtype=F64).numpy()
                        for s in range(0, len(points), chunk)], axis=2)
    return (logits[:, None, :] - np.log(-np.log(u))).argmax(-1)                     # (rows, n) point indices


@pytest.mark.parametrize("chunk", [3, 2048])
def test_empirical_draws_replay_their_generator_for_any_batch_shape(chunk):
    """Batch 5 in d = 3 (and the same as (1, 5)), per-row times, 7 points in chunks of 3 or in one: each draw
    is the point the Gumbel-max replay picks; the draws come back in z's dtype; the global RNG is untouched;
    another seed gives other draws."""
    g = torch.Generator().manual_seed(6)
    points = torch.randn(7, 3, generator=g, dtype=F64)
    z = torch.randn(5, 3, generator=g)                                               # float32
    t = torch.linspace(0.5, 0.9, 5)
    n = 4
    state = torch.get_rng_state()
    x = empirical_posterior_sample(z, t, points, n, torch.Generator().manual_seed(11), chunk)
    assert torch.equal(torch.get_rng_state(), state)
    assert x.shape == (5, n, 3) and x.dtype == torch.float32
    index = _replay_empirical(z.double().numpy(), t.double().numpy(), points.numpy(), n, 11, chunk)
    assert len(np.unique(index)) > 2                                                 # the weights are not degenerate
    assert torch.equal(x, points.float()[torch.tensor(index)])
    x2 = empirical_posterior_sample(z[None], t[None], points, n, torch.Generator().manual_seed(11), chunk)
    assert x2.shape == (1, 5, n, 3) and torch.equal(x2[0], x)
    other = empirical_posterior_sample(z, t, points, n, torch.Generator().manual_seed(12), chunk)
    assert not torch.equal(other, x)


def test_empirical_draws_for_one_point_and_for_a_batch_larger_than_the_memory_cap():
    """A single z of shape (d,) gives (n, d) (as the diagnostics call it); 4096 rows with n = 1 go through the
    path where the batch alone bounds the chunk, and still replay in one chunk of the 3 points."""
    points = torch.tensor([[-1.0], [0.0], [1.5]], dtype=F64)
    x = empirical_posterior_sample(torch.tensor([0.3], dtype=F64), 0.6, points, 5, torch.Generator().manual_seed(2))
    index = _replay_empirical(np.array([[0.3]]), np.array([0.6]), points.numpy(), 5, 2, 2048)
    assert x.shape == (5, 1) and torch.equal(x, points[torch.tensor(index[0])])
    z = torch.linspace(-2, 2, 4096, dtype=F64)[:, None]
    x = empirical_posterior_sample(z, 0.7, points, 1, torch.Generator().manual_seed(3))
    index = _replay_empirical(z.numpy(), np.full(4096, 0.7), points.numpy(), 1, 3, 3)
    assert x.shape == (4096, 1, 1) and torch.equal(x[:, 0], points[torch.tensor(index[:, 0])])
