"""Exact posteriors of the linear path: the oracle marginal velocity and the fluctuation covariance
(docs/method.md 1 and 3) for an isotropic Gaussian mixture and for the uniform distribution on a finite set.

Path `z_t = (1 - t) x + t e`, `e ~ N(0, I)`, `v_c = e - x`; the marginal velocity is `v = E[v_c | z_t = z]`
and the fluctuation `delta = v_c - v` has covariance `Sigma = Cov[v_c | z_t = z]`. `sigma2 = tr(Sigma) / d`
is the scalar-isotropic sigma^2 of docs/method.md 4. Exact draws of `x ~ p(x | z_t = z)` give fluctuation samples
`delta = (z - x) / t - v` for the matrix-form alpha* of docs/method.md 4.

Shapes: `z` is `(..., d)`, `t` broadcasts against `(...)` (a float works too); results are `(..., d)`,
`(..., d, d)`, `(...)` or, for `n` draws, `(..., n, d)`, in the dtype and on the device of `z`.
"""
from __future__ import annotations

import torch

Time = torch.Tensor | float


def _flat_inputs(z: torch.Tensor, t: Time) -> tuple[torch.Tensor, torch.Tensor]:
    """`z` as `(n, d)` and `t` as `(n,)`, with `t` broadcast over the batch shape of `z`."""
    if z.dim() < 1:
        raise ValueError(f"z must have shape (..., d), got {tuple(z.shape)}")
    t = torch.as_tensor(t, dtype=z.dtype, device=z.device)
    t = t.expand(z.shape[:-1])
    return z.reshape(-1, z.shape[-1]), t.reshape(-1)


def _check_mixture(
    z: torch.Tensor, means: torch.Tensor, variances: torch.Tensor, weights: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    if means.dim() != 2 or means.shape[1] != z.shape[-1]:
        raise ValueError(f"means must be (K, d) with d = {z.shape[-1]}, got {tuple(means.shape)}")
    k = means.shape[0]
    if variances.shape != (k,):
        raise ValueError(f"variances must be (K,) = ({k},), got {tuple(variances.shape)}")
    if weights.shape != (k,):
        raise ValueError(f"weights must be (K,) = ({k},), got {tuple(weights.shape)}")
    return means.to(z), variances.to(z), weights.to(z)


# --- isotropic Gaussian mixture ---------------------------------------------------------------------

def _gmm_posterior(
    z: torch.Tensor, t: torch.Tensor, means: torch.Tensor, variances: torch.Tensor, weights: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Component posteriors `w (n, K)` and the coefficients of `v_k = a_k z - b_k m_k`, `(n, K)` each,
    plus the per-component fluctuation variance `c_k = s_k^2 / tau_k^2`, `(n, K)`.

    Given component k, `(x, e)` is jointly Gaussian: `z_t | k ~ N((1 - t) m_k, tau_k^2 I)` with
    `tau_k^2 = (1 - t)^2 s_k^2 + t^2`, `Cov[v_c, z_t | k] = (t - (1 - t) s_k^2) I` and `Var[v_c | k] = 1 + s_k^2`,
    so Gaussian conditioning gives docs/method.md 3's
    `v_k = E[v_c | z, k] = (t (z - m_k) - (1 - t) s_k^2 z) / tau_k^2` (no division by t: finite as t -> 0)
    and `Cov[v_c | z, k] = (1 + s_k^2 - (t - (1 - t) s_k^2)^2 / tau_k^2) I = s_k^2 / tau_k^2 I`.
    """
    d = z.shape[-1]
    t1, s2 = t[:, None], variances[None, :]
    a_t = 1 - t1
    tau2 = a_t**2 * s2 + t1**2                                                    # (n, K)
    # ||z - (1 - t) m_k||^2 expanded; one matmul instead of an (n, K, d) difference
    sq = (z * z).sum(-1, keepdim=True) - 2 * a_t * (z @ means.T) + a_t**2 * (means * means).sum(-1)
    logits = torch.log(weights)[None, :] - 0.5 * d * torch.log(tau2) - 0.5 * sq.clamp_min(0) / tau2
    w = torch.softmax(logits, dim=-1)
    a = (t1 - a_t * s2) / tau2
    b = t1 / tau2
    return w, a, b, s2 / tau2


def gmm_marginal_velocity(
    z: torch.Tensor, t: Time, means: torch.Tensor, variances: torch.Tensor, weights: torch.Tensor
) -> torch.Tensor:
    """Exact marginal velocity `v(z, t) = sum_k w_k(z, t) v_k(z, t)` of an isotropic Gaussian mixture
    (docs/method.md 3): component k has mean `means[k]` (K, d), variance `variances[k] = s_k^2` (K,) and mixing
    weight `weights[k]` (K,, need not be normalised); `w_k` are the component posteriors under
    `z_t | k ~ N((1 - t) m_k, ((1 - t)^2 s_k^2 + t^2) I)` and
    `v_k = (t (z - m_k) - (1 - t) s_k^2 z) / ((1 - t)^2 s_k^2 + t^2)`, the Gaussian conditional mean of
    `e - x` (derived in `_gmm_posterior`; it agrees with docs/method.md 3). Valid on [0, 1] when all s_k > 0.
    """
    means, variances, weights = _check_mixture(z, means, variances, weights)
    zf, tf = _flat_inputs(z, t)
    w, a, b, _ = _gmm_posterior(zf, tf, means, variances, weights)
    v = (w * a).sum(-1, keepdim=True) * zf - (w * b) @ means
    return v.reshape(z.shape)


def _gmm_spread(
    z: torch.Tensor, t: Time, means: torch.Tensor, variances: torch.Tensor, weights: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Posterior weights `w (n, K)`, centred component means `v_k - v (n, K, d)` and `sum_k w_k c_k (n,)`."""
    means, variances, weights = _check_mixture(z, means, variances, weights)
    zf, tf = _flat_inputs(z, t)
    w, a, b, c = _gmm_posterior(zf, tf, means, variances, weights)
    v_k = a[..., None] * zf[:, None, :] - b[..., None] * means[None]                # (n, K, d)
    v = (w[..., None] * v_k).sum(1, keepdim=True)
    return w, v_k - v, (w * c).sum(-1)


def gmm_conditional_covariance(
    z: torch.Tensor, t: Time, means: torch.Tensor, variances: torch.Tensor, weights: torch.Tensor
) -> torch.Tensor:
    """Exact `Sigma(z, t) = Cov[v_c | z_t = z]`, `(..., d, d)`, by the law of total covariance over components:
    `Sigma = sum_k w_k (s_k^2 / tau_k^2) I + sum_k w_k (v_k - v)(v_k - v)^T` (see `_gmm_posterior`)."""
    w, centred, within = _gmm_spread(z, t, means, variances, weights)
    d = z.shape[-1]
    between = torch.einsum("nk,nki,nkj->nij", w, centred, centred)
    cov = between + within[:, None, None] * torch.eye(d, dtype=z.dtype, device=z.device)
    return cov.reshape(*z.shape, d)


def gmm_sigma2(
    z: torch.Tensor, t: Time, means: torch.Tensor, variances: torch.Tensor, weights: torch.Tensor
) -> torch.Tensor:
    """`sigma^2 = tr(Sigma(z, t)) / d` (docs/method.md 4, scalar-isotropic form), `(...)`, without building Sigma."""
    w, centred, within = _gmm_spread(z, t, means, variances, weights)
    between = (w * centred.pow(2).sum(-1)).sum(-1) / z.shape[-1]
    return (within + between).reshape(z.shape[:-1])


def _draw_count(n: int) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    return n


def gmm_posterior_sample(
    z: torch.Tensor, t: Time, means: torch.Tensor, variances: torch.Tensor, weights: torch.Tensor,
    n: int, generator: torch.Generator,
) -> torch.Tensor:
    """`n` exact draws of `x ~ p(x | z_t = z)`, `(..., n, d)`: the component k from its posterior `w_k(z, t)`,
    then Gaussian conditioning within it, `x | z, k ~ N((t^2 m_k + (1 - t) s_k^2 z) / tau_k^2, s_k^2 t^2 / tau_k^2 I)`
    with `tau_k^2 = (1 - t)^2 s_k^2 + t^2` (see `_gmm_posterior`). Given x the path fixes
    `v_c = (z - x) / t`, whose draws have mean `v` and covariance `Sigma` (docs/method.md 1). Draws come from
    `generator` (components first, then the Gaussian noise), made on its device."""
    n = _draw_count(n)
    means, variances, weights = _check_mixture(z, means, variances, weights)
    zf, tf = _flat_inputs(z, t)
    w, _, _, _ = _gmm_posterior(zf, tf, means, variances, weights)
    k = torch.multinomial(w.to(generator.device), n, replacement=True, generator=generator).to(z.device)  # (N, n)
    noise = torch.randn(*k.shape, zf.shape[1], generator=generator, device=generator.device, dtype=z.dtype).to(z.device)
    t1, s2 = tf[:, None], variances[k]                                                     # (N, 1), (N, n)
    tau2 = (1 - t1) ** 2 * s2 + t1**2
    mean = (t1.pow(2)[..., None] * means[k] + ((1 - t1) * s2)[..., None] * zf[:, None, :]) / tau2[..., None]
    x = mean + (s2 / tau2).sqrt()[..., None] * t1[..., None] * noise
    return x.reshape(*z.shape[:-1], n, z.shape[-1])


# --- uniform distribution on a finite set -----------------------------------------------------------

def _empirical_logit_factors(
    z: torch.Tensor, t: Time, points: torch.Tensor, chunk: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Flattened float64 `z (n, d)`, `t (n,)` and the factors of the posterior logits of x uniform on
    `points`: `query (n, d + 1) @ keys (N, d + 1).T` is `-||z - (1 - t) x_i||^2 / (2 t^2)` up to a per-z
    constant (docs/method.md 3's `softmax_i` weights)."""
    if points.dim() != 2 or points.shape[1] != z.shape[-1] or points.shape[0] == 0:
        raise ValueError(f"points must be (N, d) with N >= 1 and d = {z.shape[-1]}, got {tuple(points.shape)}")
    if chunk < 1:
        raise ValueError(f"chunk must be a positive int, got {chunk}")
    zf, tf = _flat_inputs(z.double(), t)
    x_all = points.to(device=z.device, dtype=torch.float64)
    keys = torch.cat([x_all, x_all.pow(2).sum(-1, keepdim=True)], 1)                 # (N, d + 1): x, ||x||^2
    coef = (1 - tf) / tf.pow(2)
    # query . key_i = ((1 - t) z . x_i - (1 - t)^2 ||x_i||^2 / 2) / t^2: the logit up to -||z||^2 / (2 t^2)
    query = torch.cat([zf * coef[:, None], (-0.5 * (1 - tf) * coef)[:, None]], 1)    # (n, d + 1)
    return zf, tf, query, keys


def _empirical_moments(
    z: torch.Tensor, t: Time, points: torch.Tensor, chunk: int, full: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Posterior moments of x given `z_t = z` for x uniform on `points` (N, d), streamed over chunks of points.

    Weights `softmax_i(-||z - (1 - t) x_i||^2 / (2 t^2))` (docs/method.md 3) with an online log-sum-exp, so memory
    is `O(n * chunk)`. Returns, in float64 and flattened, `z (n, d)`, `t (n,)`, `E[x | z] (n, d)`,
    `E[||x||^2 | z] (n,)` and, when `full`, `E[x x^T | z] (n, d, d)`.
    Float64 because the logits scale as 1 / t^2: in float32 their rounding error alone swamps
    `tr Cov[x | z] / t^2` at small t.
    """
    zf, tf, query, keys = _empirical_logit_factors(z, t, points, chunk)
    n, d = zf.shape
    if full:
        chunk = min(chunk, max(1, 2**20 // d**2))          # the (chunk, d, d) outer products stay ~8 MB
    run_max = torch.full((n,), -torch.inf, dtype=torch.float64, device=z.device)
    acc = None
    for start in range(0, keys.shape[0], chunk):
        key = keys[start:start + chunk]
        logits = query @ key.T                                                       # (n, C)
        new_max = torch.maximum(run_max, logits.amax(-1))
        p = logits.sub_(new_max[:, None]).exp_()
        feats = [torch.ones_like(key[:, :1]), key]                                    # mass, x, ||x||^2
        if full:
            x = key[:, :d]
            feats.append((x[:, :, None] * x[:, None, :]).reshape(-1, d * d))
        part = p @ torch.cat(feats, 1)
        acc = part if acc is None else acc * torch.exp(run_max - new_max)[:, None] + part
        run_max = new_max
    acc = acc[:, 1:] / acc[:, :1]
    outer = acc[:, d + 1:].reshape(n, d, d) if full else None
    return zf, tf, acc[:, :d], acc[:, d], outer


def empirical_marginal_velocity(z: torch.Tensor, t: Time, points: torch.Tensor, chunk: int = 2048) -> torch.Tensor:
    """Exact marginal velocity when x is uniform on the finite set `points` (N, d) (docs/method.md 3):
    `v = sum_i w_i v_c,i = (z - E[x | z]) / t`, since given x_i the path fixes `e_i = (z - (1 - t) x_i) / t`
    and `v_c,i = e_i - x_i = (z - x_i) / t`. Needs t > 0 (the posterior is a point mass at t = 0).
    Exact only when training draws x from this same finite set.
    """
    zf, tf, xbar, _, _ = _empirical_moments(z, t, points, chunk, full=False)
    return ((zf - xbar) / tf[:, None]).to(z.dtype).reshape(z.shape)


def empirical_conditional_covariance(
    z: torch.Tensor, t: Time, points: torch.Tensor, chunk: int = 2048
) -> torch.Tensor:
    """Exact `Sigma = Cov[v_c | z_t = z] = Cov[x | z_t = z] / t^2`, `(..., d, d)`, for x uniform on `points`
    (the `v_c,i = (z - x_i) / t` of `empirical_marginal_velocity` are affine in x_i). Costs `O(n N d^2)`."""
    _, tf, xbar, _, m2 = _empirical_moments(z, t, points, chunk, full=True)
    cov = (m2 - xbar[:, :, None] * xbar[:, None, :]) / tf.pow(2)[:, None, None]
    return cov.to(z.dtype).reshape(*z.shape, z.shape[-1])


def empirical_sigma2(z: torch.Tensor, t: Time, points: torch.Tensor, chunk: int = 2048) -> torch.Tensor:
    """`sigma^2 = tr(Sigma) / d = (E[||x||^2 | z] - ||E[x | z]||^2) / (d t^2)` for x uniform on `points`."""
    _, tf, xbar, m2, _ = _empirical_moments(z, t, points, chunk, full=False)
    tr = (m2 - xbar.pow(2).sum(-1)).clamp_min(0)
    return (tr / (z.shape[-1] * tf.pow(2))).to(z.dtype).reshape(z.shape[:-1])


def empirical_posterior_sample(
    z: torch.Tensor, t: Time, points: torch.Tensor, n: int, generator: torch.Generator, chunk: int = 2048
) -> torch.Tensor:
    """`n` exact draws of `x ~ p(x | z_t = z)` for x uniform on `points` (N, d): `(..., n, d)`, each a point
    of the set picked with the posterior weights `softmax_i(-||z - (1 - t) x_i||^2 / (2 t^2))` (docs/method.md 3).

    Gumbel-max, streamed over chunks of points (memory `O(len(z) * n * chunk)`): the index maximising
    `logit_i + g_i`, `g_i` i.i.d. standard Gumbel, is distributed as the softmax, and a running maximum over
    chunks is the maximum over all points. Gumbel noise comes from `generator`, on its device. Needs t > 0.
    """
    n = _draw_count(n)
    zf, tf, query, keys = _empirical_logit_factors(z, t, points, chunk)
    chunk = max(1, min(chunk, 2**22 // max(1, zf.shape[0] * n)))
    best = torch.full((zf.shape[0], n), -torch.inf, dtype=torch.float64, device=z.device)
    index = torch.zeros((zf.shape[0], n), dtype=torch.long, device=z.device)
    for start in range(0, keys.shape[0], chunk):
        logits = query @ keys[start:start + chunk].T                                   # (N, C)
        u = torch.rand(zf.shape[0], n, logits.shape[1], generator=generator, device=generator.device,
                       dtype=torch.float64).to(z.device)
        score, arg = (logits[:, None, :] - torch.log(-torch.log(u))).max(-1)            # (N, n)
        better = score > best
        best, index = torch.where(better, score, best), torch.where(better, arg + start, index)
    x = points.to(device=z.device, dtype=z.dtype)[index]
    return x.reshape(*z.shape[:-1], n, z.shape[-1])
