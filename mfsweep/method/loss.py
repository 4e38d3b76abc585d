"""The MeanFlow loss with tangent mixing, adaptive weighting and the flow-matching anchor
(docs/method.md 2 and 3).

Shapes: a batch is `(..., B, *sample)` where `sample` has `sample_ndim` dims (1 for vectors in R^d,
3 for latents `(C, H, W)`); leading dims (e.g. ensemble members `E`) pass through. Times are `(..., B)`.
Per-sample results are `(..., B)`; callers reduce over the batch.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from mfsweep.method.jvp import JvpFn, total_derivative_tangent
from mfsweep.method.tangent import boundary_r


def per_sample(x: torch.Tensor, sample_ndim: int) -> torch.Tensor:
    """Sum over the sample dims: `||x||^2`-style reductions to one value per sample."""
    return x.flatten(start_dim=x.dim() - sample_ndim).sum(-1)


def _bcast(time: torch.Tensor, sample_ndim: int) -> torch.Tensor:
    return time.reshape(time.shape + (1,) * sample_ndim)


def adaptive_weight(sq: torch.Tensor, p: float, eps: float) -> torch.Tensor:
    """MeanFlow's adaptive weight `w = 1 / sg(||err||^2 + eps)^p` (docs/method.md 2); p = 0 gives w = 1."""
    return (sq.detach() + eps).pow(-p)


@dataclass
class MeanFlowTerms:
    """Per-sample parts of the MeanFlow loss.

    `sq` is `||u_theta - sg(u_tgt)||^2` (graph to the parameters through the prediction only) and
    `weight` the detached adaptive weight. `weighted()` is what is trained; `mse()` the unweighted error
    that must be logged too, since with p = 1 the weighted loss sits near 1 by construction.
    """

    sq: torch.Tensor
    weight: torch.Tensor

    def weighted(self) -> torch.Tensor:
        return (self.weight * self.sq).mean(-1)

    def mse(self) -> torch.Tensor:
        return self.sq.detach().mean(-1)


def meanflow_target(v_c: torch.Tensor, h: torch.Tensor, du: torch.Tensor) -> torch.Tensor:
    """`u_tgt = sg(v_c - (t - r) * du)` with `du` the JVP along `(v_tan, 0, 1)` (docs/method.md 3).

    The regression target keeps the conditional velocity `v_c`; only the JVP tangent is mixed.
    """
    return (v_c - h * du).detach()


def meanflow_loss(
    jvp_fn: JvpFn,
    z: torch.Tensor,
    r: torch.Tensor,
    t: torch.Tensor,
    v_c: torch.Tensor,
    v_tan: torch.Tensor,
    *,
    p: float = 1.0,
    eps: float = 1e-3,
    sample_ndim: int = 1,
) -> MeanFlowTerms:
    """MeanFlow loss terms at `(z_t, r, t)` (docs/method.md 2-3).

    One forward-mode JVP of `u_theta` with tangent `(v_tan, 0, 1)` gives both the prediction `u` and the
    total derivative `du/dt`; the target `v_c - (t - r) du/dt` is stop-gradiented. With `v_tan = v_c` this
    is vanilla MeanFlow (alpha = 0); see `mix_tangent` for the control variate.
    """
    dr, dt = total_derivative_tangent(r, t)
    u, du = jvp_fn(z, r, t, v_tan, dr, dt)
    u_tgt = meanflow_target(v_c, _bcast(t - r, sample_ndim), du)
    sq = per_sample((u - u_tgt).pow(2), sample_ndim)
    return MeanFlowTerms(sq=sq, weight=adaptive_weight(sq, p, eps))


def flow_matching_anchor(
    u_fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
    z: torch.Tensor,
    t: torch.Tensor,
    v_c: torch.Tensor,
    offset: float,
    *,
    sample_ndim: int = 1,
) -> torch.Tensor:
    """Per-sample flow-matching anchor `||u_theta(z_t, t - D, t) - v_c||^2` (docs/method.md 3).

    It supervises the network next to the boundary r = t, where the EMA proxy is evaluated, and so keeps
    the proxy's bias small.
    """
    return per_sample((u_fn(z, boundary_r(t, offset), t) - v_c).pow(2), sample_ndim)
