"""The ingredients of the optimal alpha (docs/method.md 4) measured during training, and its predictions.

Pure measurement helpers (no Lightning): `measure` takes the network's JVP and per-sample ingredients of one
diagnostics batch, calls `mfsweep.method.theory` (Hutchinson scalars, matrix-form terms) and returns them
per sample; `bin_statistics` turns them into summed sufficient statistics per bin of h = t - r; `summarise`
turns summed statistics (of one batch, or of every measurement of the second half of training) into the
reported values. Summaries are always ratios of sums, never means of per-sample or per-step ratios.

The global scalar form. Summing docs/method.md 4's per-sample
    MSE_i(alpha) / d = sigma2_i (h_i^2 (1 - alpha)^2 F_i - 2 h_i (1 - alpha) s_i + 1) + alpha^2 h_i^2 F_i bias2_i
(s = j_s, F = j_F^2) over the samples and setting the derivative in alpha to zero gives
    alpha* = sum_i sigma2_i (h_i^2 F_i - h_i s_i) / sum_i h_i^2 F_i (sigma2_i + bias2_i)
           = kappa * sigma2 / (sigma2 + bias2), with
    kappa  = 1 - sum_i sigma2_i h_i s_i / sum_i sigma2_i h_i^2 F_i        (= 1 - 1/c, so c = 1 / (1 - kappa)),
    sigma2 = sum_i h_i^2 F_i sigma2_i / sum_i h_i^2 F_i,   bias2 = sum_i h_i^2 F_i bias2_i / sum_i h_i^2 F_i:
kappa is docs/method.md 4's `1 - j_s / (h j_F^2)` aggregated with sigma2 weights (`1 - sum h s / sum h^2 F` when
sigma2 is constant), and sigma2, bias2 are means weighted by h^2 j_F^2, the weight with which they enter the
summed MSE. So `alpha_star(c, sigma2, bias2)` of the reported numbers is exactly the minimiser of the summed
scalar MSE. The matrix forms sum their per-sample numerators and denominators the same way (docs/method.md 4).
`j_s`, `j_F2` are reported as plain means.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol, Sequence

import torch

from mfsweep.method.jvp import JvpFn
from mfsweep.method.theory import (
    AlphaStarEstimate,
    JacobianScalars,
    MatrixTerms,
    alpha_star,
    c_from_jacobian,
    hutchinson_jacobian,
    kappa,
    matrix_terms,
)

# Summed per bin; `summarise` derives every reported value from these.
STATS = ("n", "j_s", "j_F2", "sigma2_h_js", "sigma2_h2_jF2", "h2_jF2", "h2_jF2_bias2", "h2_jF2_gap",
         "ub_numerator", "ub_denominator", "bias_denominator")
# Logged as `diag/<key>`, one value per member, at every measurement.
LOGGED = ("j_s", "j_F2", "c", "kappa", "sigma2", "bias2", "bias2_ema_gap", "alpha_star_scalar", "alpha_star_ub",
          "alpha_star_m")


class Posterior(Protocol):
    """A dataset with an exact posterior (Gaussian mixture, finite set): `mfsweep.data.gmm`."""

    def marginal_velocity(self, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor: ...

    def sigma2(self, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor: ...

    def sample_posterior(self, z: torch.Tensor, t: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor: ...


@dataclass
class Ingredients:
    """Per-sample ingredients of one diagnostics batch, `(E, B)` each: h = t - r, the Hutchinson scalars of the
    spatial Jacobian at (z_t, r, t), sigma2, the bias2 that enters alpha*, the EMA-tracking gap, and the
    matrix-form terms (None without an exact posterior)."""

    h: torch.Tensor
    jacobian: JacobianScalars
    sigma2: torch.Tensor
    bias2: torch.Tensor
    gap: torch.Tensor
    matrix: MatrixTerms | None


def mean_square(x: torch.Tensor, sample_ndim: int) -> torch.Tensor:
    """`||x||^2 / d` per sample: the per-coordinate scale of sigma2, bias2 and the EMA gap (docs/method.md 4)."""
    flat = x.flatten(start_dim=x.dim() - sample_ndim)
    return flat.pow(2).mean(-1)


@torch.no_grad()
def sample_fluctuations(posterior: Posterior, z: torch.Tensor, t: torch.Tensor, n: int,
                        generators: Sequence[torch.Generator]) -> torch.Tensor:
    """`n` exact draws of `delta = v_c - v(z, t)` per z (docs/method.md 1), `(E, B, n, d)` for z `(E, B, d)`:
    `x ~ p(x | z_t = z)` from the posterior, each member from its own generator, and `v_c = (z - x) / t` (the
    path fixes e given x and z), in float64 so that the division by small t loses nothing."""
    z64, t64 = z.double(), t.double()
    v = posterior.marginal_velocity(z64, t64)
    x = torch.stack([posterior.sample_posterior(z64[i], t64[i], n, g) for i, g in enumerate(generators)])
    delta = (z64.unsqueeze(-2) - x) / t64[..., None, None] - v.unsqueeze(-2)
    return delta.to(z.dtype)


@torch.no_grad()
def measure(
    jvp_fn: JvpFn,
    z: torch.Tensor,
    r: torch.Tensor,
    t: torch.Tensor,
    *,
    generators: Sequence[torch.Generator],
    n_probes: int,
    sigma2: torch.Tensor,
    bias2: torch.Tensor,
    gap: torch.Tensor,
    delta: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    sample_ndim: int = 1,
) -> Ingredients:
    """The ingredients at `(z_t, r, t)` (z `(E, B, *sample)`, times `(E, B)`): Hutchinson `j_s`, `j_F2` of
    `J = du/dz` with `n_probes` probes per sample, each member's from its own generator, and, given draws
    `delta` `(E, B, M, *sample)` (and the proxy's bias vector `bias`), the per-sample matrix-form terms."""
    jac = hutchinson_jacobian(jvp_fn, z, r, t, n_probes, generators, sample_ndim=sample_ndim)
    matrix = None if delta is None else matrix_terms(jvp_fn, z, r, t, delta, bias, sample_ndim=sample_ndim)
    return Ingredients(t - r, jac, sigma2, bias2, gap, matrix)


def bin_statistics(ing: Ingredients, edges: Sequence[float]) -> torch.Tensor:
    """The `STATS` summed per bin of h, `(E, n_bins + 1, len(STATS))` in float64; the last row is the whole
    batch. Bins are `[lo, hi)`, the last one closed at 1."""
    h = ing.h.double()
    s, f = ing.jacobian.j_s.double(), ing.jacobian.j_F2.double()
    sigma2, w = ing.sigma2.double(), h.pow(2) * f
    nan = torch.full_like(h, math.nan)
    m = ing.matrix
    columns = [
        torch.ones_like(h), s, f, sigma2 * h * s, sigma2 * w, w, w * ing.bias2.double(), w * ing.gap.double(),
        nan if m is None else m.numerator.double(), nan if m is None else m.fluctuation.double(),
        nan if m is None else m.bias.double(),
    ]
    per_sample = torch.stack(columns, -1)                                            # (E, B, S)
    inner = torch.as_tensor(list(edges)[1:-1], dtype=h.dtype, device=h.device)
    onehot = torch.nn.functional.one_hot(torch.bucketize(h, inner, right=True), len(edges) - 1).to(h.dtype)
    # NaN * 0 = NaN: a column that cannot be measured (or a diverged member) stays NaN in every bin
    by_bin = onehot.transpose(-1, -2) @ per_sample                                   # (E, n_bins, S)
    return torch.cat([by_bin, per_sample.sum(-2, keepdim=True)], -2)


def summarise(stats: torch.Tensor) -> dict[str, torch.Tensor]:
    """Reported values from summed `STATS` `(..., len(STATS))` (see the module docstring for the global form):
    `n`, `j_s`, `j_F2`, `c`, `kappa`, `sigma2`, `bias2`, `bias2_ema_gap`, `alpha_star_scalar` (clipped to
    [0, 1]), and with fluctuation draws `alpha_star_ub`, `alpha_star_m` and their unclipped ratios (NaN
    without)."""
    v = dict(zip(STATS, stats.unbind(-1)))
    n, weight = v["n"], v["h2_jF2"]
    c = c_from_jacobian(1.0, v["sigma2_h_js"], v["sigma2_h2_jF2"])                  # sum sigma2 h^2 F / sum sigma2 h s
    sigma2, bias2 = _ratio(v["sigma2_h2_jF2"], weight), _ratio(v["h2_jF2_bias2"], weight)
    ub = AlphaStarEstimate.from_sums(v["ub_numerator"], v["ub_denominator"])
    m = AlphaStarEstimate.from_sums(v["ub_numerator"], v["ub_denominator"] + v["bias_denominator"])
    values = {
        "j_s": v["j_s"] / n, "j_F2": v["j_F2"] / n, "c": c, "kappa": kappa(c),
        "sigma2": sigma2, "bias2": bias2, "bias2_ema_gap": _ratio(v["h2_jF2_gap"], weight),
        "alpha_star_scalar": alpha_star(c, sigma2, bias2),
        "alpha_star_ub": torch.where(v["ub_denominator"].isnan(), math.nan, ub.value),
        "alpha_star_m": torch.where(v["bias_denominator"].isnan(), math.nan, m.value),
        # how far outside [0, 1] the matrix forms fall (the scalar form's is kappa, for bias2 = 0)
        "alpha_star_ub_unclipped": ub.unclipped, "alpha_star_m_unclipped": m.unclipped,
    }
    # an empty bin has no values (not the 0 that a flat MSE would give)
    return {"n": n} | {k: torch.where(n == 0, math.nan, x) for k, x in values.items()}


def _ratio(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    return torch.where(den == 0, torch.full_like(num, math.nan), num / torch.where(den == 0, 1.0, den))


def record_summary(stats: Sequence[torch.Tensor], edges: Sequence[float]) -> dict[str, Any]:
    """The record's `diagnostics` for one member from the statistics of its measurements `(n_bins + 1, S)`
    (the caller passes the second half of training): overall values, `by_h_bin` (a list of
    `{h_lo, h_hi, n, <values>}`), each from the sums over all those measurements, and `measured` (sample and
    measurement counts). Values that cannot be measured (no posterior) are None."""
    total = summarise(torch.stack(list(stats)).sum(0))
    overall = {k: _float(val[-1]) for k, val in total.items()}
    bins = []
    for i, (lo, hi) in enumerate(zip(edges[:-1], edges[1:])):
        row = {"h_lo": float(lo), "h_hi": float(hi)} | {k: _float(val[i]) for k, val in total.items()}
        row["n"] = int(total["n"][i])
        bins.append(row)
    overall.pop("n")
    return overall | {"by_h_bin": bins, "measured": {"n_samples": int(total["n"][-1]), "n_measurements": len(stats)}}


def _float(x: torch.Tensor) -> float | None:
    value = float(x)
    return value if math.isfinite(value) else None
