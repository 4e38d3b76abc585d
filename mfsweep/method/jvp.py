"""The one forward-mode JVP of MeanFlow (docs/method.md 2).

Across mfsweep a *JVP function* has the signature `jvp_fn(z, r, t, dz, dr, dt) -> (u, du)`: `u` is
`u_theta(z, r, t)` (carrying the autograd graph to the parameters) and `du` its directional derivative
along `(dz, dr, dt)`. The MeanFlow total derivative is the tangent `(v, 0, 1)`; Hutchinson probes of the
spatial Jacobian use `(xi, 0, 0)`. Models may supply a faster hand-written JVP with the same contract;
`functional_jvp` is the generic one.
"""
from __future__ import annotations

from typing import Callable

import torch

UFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
JvpFn = Callable[..., tuple[torch.Tensor, torch.Tensor]]


def functional_jvp(
    u_fn: UFn, z: torch.Tensor, r: torch.Tensor, t: torch.Tensor,
    dz: torch.Tensor, dr: torch.Tensor, dt: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`(u, du)` of `u_fn` at `(z, r, t)` along `(dz, dr, dt)` with one `torch.func.jvp` pass."""
    return torch.func.jvp(u_fn, (z, r, t), (dz, dr, dt))


def total_derivative_tangent(r: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The time part `(dr, dt) = (0, 1)` of MeanFlow's tangent `(v, 0, 1)`."""
    return torch.zeros_like(r), torch.ones_like(t)
