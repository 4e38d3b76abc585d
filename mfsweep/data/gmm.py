"""Gaussian mixtures with an exact posterior (`dgmm`, docs/design.md), and the empirical posterior of a finite set.

Both carry the oracle of docs/method.md 3: the exact marginal velocity `v(z, t) = E[v_c | z_t = z]`, the
fluctuation covariance `Sigma(z, t)`, `sigma2 = tr(Sigma) / d` and exact draws of `x | z_t` (the
`Posterior` protocol of `mfsweep.tasks.diagnostics`); the formulas live in `mfsweep.method.posterior`.
"""
from __future__ import annotations

import math
from numbers import Integral, Real

import torch

from mfsweep.method.posterior import (
    Time,
    empirical_conditional_covariance,
    empirical_marginal_velocity,
    empirical_sigma2,
    empirical_posterior_sample,
    gmm_conditional_covariance,
    gmm_marginal_velocity,
    gmm_posterior_sample,
    gmm_sigma2,
)


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def _real(name: str, value: object, *, positive: bool) -> float:
    ok = isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or (value <= 0 if positive else value < 0):
        raise ValueError(f"{name} must be a finite {'positive' if positive else 'non-negative'} number, got {value!r}")
    return float(value)


class GaussianMixture:
    """An isotropic Gaussian mixture in R^dim: K equally weighted components `N(m_k, scale^2 I)`.

    Means recipe: `m_k ~ N(0, spread^2 I_dim)`, i.i.d. in float64 from `torch.Generator().manual_seed(means_seed)`,
    so the mixture is a function of `(dim, n_components, spread, means_seed)` alone. Every coordinate of
    the data then has variance about `spread^2 + scale^2`; the defaults (spread 1, scale 0.1) match the
    unit-variance noise and give K tight modes whose pairwise distances grow like `spread * sqrt(2 dim)`, so
    their posteriors overlap only near the noise end at high dim.
    """

    name: str = "dgmm"

    def __init__(self, dim: int, n_components: int, scale: float = 0.1, spread: float = 1.0, means_seed: int = 0):
        self.dim = _positive_int("dim", dim)
        self.n_components = _positive_int("n_components", n_components)
        self.scale = _real("scale", scale, positive=True)
        self.spread: float | None = _real("spread", spread, positive=False)
        if isinstance(means_seed, bool) or not isinstance(means_seed, Integral):
            raise ValueError(f"means_seed must be an int, got {means_seed!r}")
        self.means_seed: int | None = int(means_seed)
        g = torch.Generator().manual_seed(self.means_seed)
        means = self.spread * torch.randn(self.n_components, self.dim, generator=g, dtype=torch.float64)
        self._set_components(means, torch.full((self.n_components,), 1.0 / self.n_components, dtype=torch.float64))

    @classmethod
    def from_means(cls, means: torch.Tensor, scale: float, weights: torch.Tensor | None = None) -> "GaussianMixture":
        """A mixture with the given means (K, dim), common std `scale` and mixing weights (K,, default equal)."""
        if means.dim() != 2:
            raise ValueError(f"means must be (K, dim), got {tuple(means.shape)}")
        k, dim = means.shape
        mixture = cls(dim, k, scale=scale)
        if weights is None:
            weights = torch.full((k,), 1.0 / k, dtype=torch.float64)
        if weights.shape != (k,) or not bool((weights >= 0).all()) or not float(weights.sum()) > 0:
            raise ValueError(f"weights must be (K,) = ({k},), non-negative, not all zero; got {weights}")
        mixture.spread, mixture.means_seed = None, None
        mixture._set_components(means.double(), weights.double() / weights.sum())
        return mixture

    def _set_components(self, means: torch.Tensor, weights: torch.Tensor) -> None:
        self.means, self.weights = means, weights
        self.variances = torch.full_like(weights, self.scale**2)
        self._cache: dict[tuple[torch.device, torch.dtype], tuple[torch.Tensor, ...]] = {}

    def _params(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Means, variances and weights on the device and in the dtype of `z` (copied once per pair)."""
        key = (z.device, z.dtype)
        if key not in self._cache:
            self._cache[key] = tuple(p.to(z) for p in (self.means, self.variances, self.weights))
        return self._cache[key]

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """`n` i.i.d. points, (n, dim) float32; all randomness from `generator`."""
        if isinstance(n, bool) or not isinstance(n, Integral) or n < 0:
            raise ValueError(f"n must be a non-negative int, got {n!r}")
        k = torch.multinomial(self.weights, int(n), replacement=True, generator=generator)
        noise = torch.randn(int(n), self.dim, generator=generator, dtype=torch.float64)
        return (self.means[k] + self.scale * noise).float()

    def marginal_velocity(self, z: torch.Tensor, t: Time) -> torch.Tensor:
        """The exact oracle `v(z, t)` (docs/method.md 3), (..., dim)."""
        return gmm_marginal_velocity(z, t, *self._params(z))

    def conditional_covariance(self, z: torch.Tensor, t: Time) -> torch.Tensor:
        """`Sigma(z, t) = Cov[v_c | z_t = z]`, (..., dim, dim)."""
        return gmm_conditional_covariance(z, t, *self._params(z))

    def sigma2(self, z: torch.Tensor, t: Time) -> torch.Tensor:
        """`tr(Sigma(z, t)) / dim`, (...)."""
        return gmm_sigma2(z, t, *self._params(z))

    def sample_posterior(self, z: torch.Tensor, t: Time, n: int, generator: torch.Generator) -> torch.Tensor:
        """`n` exact draws of `x ~ p(x | z_t = z)`, (..., n, dim): component, then Gaussian conditional."""
        return gmm_posterior_sample(z, t, *self._params(z), n, generator)


class EmpiricalPosterior:
    """The exact posterior of the uniform distribution on a finite set `points` (N, d) (docs/method.md 3).

    Its oracle is exact ONLY when training draws x from this same finite set; against a continuous data
    distribution it is the memorising velocity field of the sample, a biased proxy.
    """

    def __init__(self, points: torch.Tensor, chunk: int = 2048):
        if not isinstance(points, torch.Tensor) or points.dim() != 2 or points.shape[0] == 0:
            shape = tuple(points.shape) if isinstance(points, torch.Tensor) else type(points).__name__
            raise ValueError(f"points must be a non-empty (N, d) tensor, got {shape}")
        if not bool(torch.isfinite(points).all()):
            raise ValueError("points must be finite")
        self.points = points.detach().to(torch.float64)
        self.dim = points.shape[1]
        self.chunk = _positive_int("chunk", chunk)
        self._cache: dict[torch.device, torch.Tensor] = {}

    def _points(self, z: torch.Tensor) -> torch.Tensor:
        """The points (float64, the posterior's working precision) on the device of `z`, copied once."""
        if z.device not in self._cache:
            self._cache[z.device] = self.points.to(z.device)
        return self._cache[z.device]

    def marginal_velocity(self, z: torch.Tensor, t: Time) -> torch.Tensor:
        """The exact oracle `v(z, t)` for x uniform on the points, (..., d); needs t > 0."""
        return empirical_marginal_velocity(z, t, self._points(z), self.chunk)

    def conditional_covariance(self, z: torch.Tensor, t: Time) -> torch.Tensor:
        """`Sigma(z, t) = Cov[v_c | z_t = z]`, (..., d, d)."""
        return empirical_conditional_covariance(z, t, self._points(z), self.chunk)

    def sigma2(self, z: torch.Tensor, t: Time) -> torch.Tensor:
        """`tr(Sigma(z, t)) / d`, (...)."""
        return empirical_sigma2(z, t, self._points(z), self.chunk)

    def sample_posterior(self, z: torch.Tensor, t: Time, n: int, generator: torch.Generator) -> torch.Tensor:
        """`n` exact draws of `x ~ p(x | z_t = z)`, (..., n, d): points picked with the posterior weights."""
        return empirical_posterior_sample(z, t, self._points(z), n, generator, self.chunk)


def three_mode_mixture() -> GaussianMixture:
    """The 2-D three-mode mixture of the paper's Figure 1 (docs/method.md 5): equal weights, std 0.25, means on
    an equilateral triangle of circumradius 2 (angles 90, 210 and 330 degrees), so the modes are well
    separated at the data end and their conditional paths overlap in between."""
    angles = torch.tensor([90.0, 210.0, 330.0], dtype=torch.float64) * (math.pi / 180)
    means = 2.0 * torch.stack([torch.cos(angles), torch.sin(angles)], dim=1)
    return GaussianMixture.from_means(means, scale=0.25)
