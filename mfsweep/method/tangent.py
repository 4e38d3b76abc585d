"""Tangent mixing: the control variate (docs/method.md 3)."""
from __future__ import annotations

import torch


def mix_tangent(v_c: torch.Tensor, u_bar: torch.Tensor | None, alpha: torch.Tensor | float) -> torch.Tensor:
    """`v_tan = (1 - alpha) * v_c + alpha * u_bar` (docs/method.md 3).

    `u_bar` is a deterministic proxy for the marginal velocity (EMA network, oracle); `None` means the
    `conditional` tangent, vanilla MeanFlow, where only alpha = 0 is meaningful. `alpha` broadcasts against
    `v_c` (a float, or one value per ensemble member shaped like `(E, 1, 1)`).
    """
    if u_bar is None:
        return v_c
    return v_c + alpha * (u_bar - v_c)


def boundary_r(t: torch.Tensor, offset: float) -> torch.Tensor:
    """`r = t - D` clamped at 0: where the EMA proxy and the flow-matching anchor evaluate the network
    (docs/method.md 3), a thin band next to the boundary r = t."""
    return (t - offset).clamp_min(0.0)
