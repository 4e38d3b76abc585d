"""The optimal tangent-mixing coefficient alpha* (docs/method.md 4, the restored Theorem 4) and its estimators.

Per-sample error with `h = t - r`, spatial Jacobian `J = dU/dz` and proxy bias `b = u_bar - v`:
`err = R + (h (1 - alpha) J - I) delta + alpha h J b`. Under parameter isotropy (G ~ I) the gradient MSE is
`MSE(alpha) = E || (h (1 - alpha) J - I) delta ||^2 + alpha^2 h^2 || J b ||^2`, a convex quadratic in alpha,
so its minimiser over [0, 1] is the unconstrained one clipped to [0, 1].

Scalar helpers take floats (and return floats) or tensors (and broadcast). Sample-based estimators take a
JVP function `jvp_fn(z, r, t, dz, dr, dt) -> (u, du)` (see `mfsweep.method.jvp`) and batches shaped
`(..., B, *sample)` with `sample_ndim` sample dims; times are `(..., B)`. They run under `torch.no_grad()`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple, Sequence

import torch

from mfsweep.method.jvp import JvpFn
from mfsweep.method.loss import per_sample

Scalar = torch.Tensor | float


def _as_tensors(*values: Scalar) -> tuple[list[torch.Tensor], bool]:
    """The values as tensors of one dtype/device, and whether they were all plain numbers (then float64)."""
    ref = next((v for v in values if isinstance(v, torch.Tensor)), None)
    if ref is None:
        return [torch.tensor(float(v), dtype=torch.float64) for v in values], True
    dtype = ref.dtype if ref.is_floating_point() else torch.get_default_dtype()
    return [torch.as_tensor(v, dtype=dtype, device=ref.device) for v in values], False


def _out(value: torch.Tensor, scalar: bool) -> Scalar:
    return value.item() if scalar else value


def _safe_ratio(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """`num / den`, and 0 where `den == 0` (the flat case: every alpha is optimal; 0 is vanilla MeanFlow)."""
    return torch.where(den == 0, torch.zeros_like(num), num / torch.where(den == 0, torch.ones_like(den), den))


# --- scalar-isotropic form --------------------------------------------------------------------------

def kappa(c: Scalar) -> Scalar:
    """Noise-cancellation factor `kappa = 1 - 1/c` (docs/method.md 4), with `c = h j` for `J = j I`.

    `c = 0` means `h j_F = 0`: MSE(alpha) is flat in alpha, and kappa is 0 so that alpha* = 0 (vanilla).
    `c = 1` (the Jacobi factor `A = I - hJ` vanishes) gives 0; `|c| -> inf` gives 1; `c < 0` gives kappa > 1.
    """
    (c,), scalar = _as_tensors(c)
    return _out(torch.where(c == 0, torch.zeros_like(c), 1 - _safe_ratio(torch.ones_like(c), c)), scalar)


def james_stein(sigma2: Scalar, bias2: Scalar) -> Scalar:
    """James-Stein shrinkage `sigma^2 / (sigma^2 + bias2)` (docs/method.md 4); 0 when both vanish (flat MSE).
    Both arguments are non-negative per-coordinate second moments."""
    (sigma2, bias2), scalar = _as_tensors(sigma2, bias2)
    return _out(_safe_ratio(sigma2, sigma2 + bias2), scalar)


def alpha_star(c: Scalar, sigma2: Scalar, bias2: Scalar, clip: bool = True) -> Scalar:
    """`alpha* = kappa(c) * sigma^2 / (sigma^2 + bias2)`, clipped to [0, 1] (the box optimum) (docs/method.md 4).

    `c = h j` for `J = j I`, in general `c = h j_F^2 / j_s` (`c_from_jacobian`). Checks: c = 1 gives 0;
    0 < c <= 1 gives 0 after clipping; c < 0 gives 1 after clipping; bias2 -> 0 gives kappa; |c| -> inf
    gives kappa -> 1; a flat MSE (c = 0, or sigma^2 = bias2 = 0) gives 0.
    """
    (c, sigma2, bias2), scalar = _as_tensors(c, sigma2, bias2)
    value = kappa(c) * james_stein(sigma2, bias2)
    return _out(value.clamp(0.0, 1.0) if clip else value, scalar)


def mse_curve(alpha: Scalar, c: Scalar, sigma2: Scalar, bias2: Scalar) -> Scalar:
    """`MSE(alpha) / d = sigma^2 ((1 - alpha) c - 1)^2 + alpha^2 c^2 bias2` (docs/method.md 4).

    This is docs/method.md 4's `sigma^2 (h^2 (1 - alpha)^2 j_F^2 - 2 h (1 - alpha) j_s + 1) + alpha^2 h^2 j_F^2 bias2`
    for `J = j I` (`j_s = j`, `j_F^2 = j^2`, `c = h j`), exactly, with no extra normalisation. For a general J
    the values differ but the minimiser is the same function of `c = h j_F^2 / j_s`: `alpha_star(c, ...)`.
    """
    (alpha, c, sigma2, bias2), scalar = _as_tensors(alpha, c, sigma2, bias2)
    return _out(sigma2 * ((1 - alpha) * c - 1).pow(2) + alpha.pow(2) * c.pow(2) * bias2, scalar)


def c_from_jacobian(h: Scalar, j_s: Scalar, j_F2: Scalar) -> Scalar:
    """The general `c = h j_F^2 / j_s` (docs/method.md 4), so that `kappa(c) = 1 - j_s / (h j_F^2)`.
    `h j_F^2 = 0` (flat MSE) gives c = 0; `j_s = 0` otherwise gives c = inf (kappa = 1)."""
    (h, j_s, j_F2), scalar = _as_tensors(h, j_s, j_F2)
    num = h * j_F2
    c = torch.where(num == 0, torch.zeros_like(num), num / j_s)
    return _out(c, scalar)


def kappa_from_jacobian(h: Scalar, j_s: Scalar, j_F2: Scalar) -> Scalar:
    """`kappa = 1 - j_s / (h j_F^2)` (docs/method.md 4); 0 for a flat MSE (`h j_F^2 = 0`)."""
    (h, j_s, j_F2), scalar = _as_tensors(h, j_s, j_F2)
    den = h * j_F2
    return _out(torch.where(den == 0, torch.zeros_like(den), 1 - _safe_ratio(j_s, den)), scalar)


# --- Hutchinson scalars of the spatial Jacobian ----------------------------------------------------

class JacobianScalars(NamedTuple):
    """Per-sample `j_s = tr(J) / d` (signed) and `j_F2 = ||J||_F^2 / d`, `(..., B)` each."""

    j_s: torch.Tensor
    j_F2: torch.Tensor


def _spatial_jvp(jvp_fn: JvpFn, z: torch.Tensor, r: torch.Tensor, t: torch.Tensor, dz: torch.Tensor) -> torch.Tensor:
    """`J dz` with `J = dU/dz`: the JVP along `(dz, 0, 0)`."""
    return jvp_fn(z, r, t, dz, torch.zeros_like(r), torch.zeros_like(t))[1]


def _rademacher(z: torch.Tensor, generator: torch.Generator | Sequence[torch.Generator]) -> torch.Tensor:
    """+-1 entries shaped like `z`, from one generator or one generator per leading slice."""
    def draw(shape: torch.Size, g: torch.Generator) -> torch.Tensor:
        return torch.randint(0, 2, shape, generator=g, device=g.device).to(z) * 2 - 1

    if isinstance(generator, torch.Generator):
        return draw(z.shape, generator)
    return torch.stack([draw(z.shape[1:], g) for g in generator])


@torch.no_grad()
def hutchinson_jacobian(
    jvp_fn: JvpFn,
    z: torch.Tensor,
    r: torch.Tensor,
    t: torch.Tensor,
    n_probes: int,
    generator: torch.Generator | Sequence[torch.Generator],
    *,
    sample_ndim: int = 1,
) -> JacobianScalars:
    """Hutchinson estimates of `j_s = xi . J xi / d` and `j_F^2 = ||J xi||^2 / d` (docs/method.md 4), averaged
    over `n_probes` Rademacher probes `xi` (entries +-1 with E[xi xi^T] = I; the lowest-variance probe for
    traces, exact for a diagonal J), one JVP with tangent `(xi, 0, 0)` each. Probes are drawn from
    `generator` on its own device; a sequence of generators, one per leading index of `z` (e.g. ensemble
    member), draws each slice `z[i]`'s probes from its own generator, so a member sees the probes that a
    single run with that generator sees."""
    if isinstance(n_probes, bool) or not isinstance(n_probes, int) or n_probes < 1:
        raise ValueError(f"n_probes must be a positive int, got {n_probes!r}")
    if not isinstance(generator, torch.Generator) and len(generator) != z.shape[0]:
        raise ValueError(f"generator: one per leading index of z ({z.shape[0]}), got {len(generator)}")
    d = math.prod(z.shape[z.dim() - sample_ndim:])
    j_s = torch.zeros(z.shape[: z.dim() - sample_ndim], dtype=z.dtype, device=z.device)
    j_F2 = torch.zeros_like(j_s)
    for _ in range(n_probes):
        xi = _rademacher(z, generator)
        j_xi = _spatial_jvp(jvp_fn, z, r, t, xi)
        j_s += per_sample(xi * j_xi, sample_ndim)
        j_F2 += per_sample(j_xi.pow(2), sample_ndim)
    return JacobianScalars(j_s / (n_probes * d), j_F2 / (n_probes * d))


# --- matrix form from sampled fluctuations ---------------------------------------------------------

@dataclass
class AlphaStarEstimate:
    """A global alpha* = (sum of numerators) / (sum of denominators) over the batch (docs/method.md 4).

    `numerator`, `denominator`: the unclipped sums, `(...)` (one per leading index, e.g. ensemble member);
    `value`: the ratio clipped to [0, 1], 0 where the denominator vanishes (flat MSE).
    """

    numerator: torch.Tensor
    denominator: torch.Tensor
    value: torch.Tensor

    @classmethod
    def from_sums(cls, numerator: torch.Tensor, denominator: torch.Tensor) -> "AlphaStarEstimate":
        """The estimate for summed numerators and denominators (over samples, and over measurements)."""
        return cls(numerator, denominator, _safe_ratio(numerator, denominator).clamp(0.0, 1.0))

    @property
    def unclipped(self) -> torch.Tensor:
        return _safe_ratio(self.numerator, self.denominator)


class MatrixTerms(NamedTuple):
    """Per-sample terms of the matrix form, `(..., B)` each (docs/method.md 4): `numerator`
    `E_m[(hJ delta_m) . ((hJ - I) delta_m)]`, `fluctuation` `E_m ||hJ delta_m||^2` and `bias` `||hJ b||^2`
    (zeros without a bias). `alpha*_ub` is sum(numerator) / sum(fluctuation), `alpha*_M` adds sum(bias)
    to the denominator."""

    numerator: torch.Tensor
    fluctuation: torch.Tensor
    bias: torch.Tensor


@torch.no_grad()
def matrix_terms(
    jvp_fn: JvpFn,
    z: torch.Tensor,
    r: torch.Tensor,
    t: torch.Tensor,
    delta: torch.Tensor,
    bias: torch.Tensor | None = None,
    *,
    sample_ndim: int = 1,
) -> MatrixTerms:
    """The per-sample terms of `alpha*_M` and `alpha*_ub` (see `alpha_star_matrix`), before the batch sums,
    so that callers can also sum them over subsets (bins of t - r) or over many measurements."""
    batch_shape = z.shape[: z.dim() - sample_ndim]
    sample_shape = z.shape[z.dim() - sample_ndim:]
    m_axis = len(batch_shape)
    if delta.dim() != z.dim() + 1 or delta.shape[:m_axis] != batch_shape or delta.shape[m_axis + 1:] != sample_shape:
        raise ValueError(
            f"delta must be (..., B, M, *sample) = {(*batch_shape, 'M', *sample_shape)}, got {tuple(delta.shape)}"
        )
    if bias is not None and bias.shape != z.shape:
        raise ValueError(f"bias must have the shape of z {tuple(z.shape)}, got {tuple(bias.shape)}")
    h = (t - r).reshape(batch_shape + (1,) * sample_ndim)
    n_draws = delta.shape[m_axis]
    num = torch.zeros(batch_shape, dtype=z.dtype, device=z.device)
    den = torch.zeros_like(num)
    for m in range(n_draws):
        delta_m = delta.select(m_axis, m)
        hj_delta = h * _spatial_jvp(jvp_fn, z, r, t, delta_m)
        num += per_sample(hj_delta * (hj_delta - delta_m), sample_ndim)
        den += per_sample(hj_delta.pow(2), sample_ndim)
    bias_term = torch.zeros_like(num)
    if bias is not None:
        bias_term = per_sample((h * _spatial_jvp(jvp_fn, z, r, t, bias)).pow(2), sample_ndim)
    return MatrixTerms(num / n_draws, den / n_draws, bias_term)


def alpha_star_matrix(
    jvp_fn: JvpFn,
    z: torch.Tensor,
    r: torch.Tensor,
    t: torch.Tensor,
    delta: torch.Tensor,
    bias: torch.Tensor | None = None,
    *,
    sample_ndim: int = 1,
) -> AlphaStarEstimate:
    """Matrix-form minimiser under parameter isotropy (G ~ I) (docs/method.md 4):
    `alpha*_M = E[(hJ delta) . ((hJ - I) delta)] / (E||hJ delta||^2 + ||hJ b||^2)`.

    `delta` is `(..., B, M, *sample)`: M draws of the fluctuation `v_c - v` at each z (the inner E is their
    mean); `bias` `(..., B, *sample)` is the proxy bias `u_bar - v` (None drops the term: `alpha*_ub`).
    The batch enters as sums of numerators and of denominators, not as a mean of per-sample optima.
    One JVP with tangent `(delta_m, 0, 0)` per draw gives `J delta_m`.
    """
    terms = matrix_terms(jvp_fn, z, r, t, delta, bias, sample_ndim=sample_ndim)
    return AlphaStarEstimate.from_sums(terms.numerator.sum(-1), (terms.fluctuation + terms.bias).sum(-1))


def alpha_star_upper_bound(
    jvp_fn: JvpFn,
    z: torch.Tensor,
    r: torch.Tensor,
    t: torch.Tensor,
    delta: torch.Tensor,
    *,
    sample_ndim: int = 1,
) -> AlphaStarEstimate:
    """`alpha*_ub = E[(hJ delta) . ((hJ - I) delta)] / E||hJ delta||^2` (docs/method.md 4): the matrix form with the
    bias term dropped; after clipping it bounds alpha*_M from above (before clipping, when the numerator >= 0)."""
    return alpha_star_matrix(jvp_fn, z, r, t, delta, None, sample_ndim=sample_ndim)
