"""Class conditioning for MeanFlow: label dropout and guidance-in-training (docs/method.md 2, "Class conditioning").

MeanFlow bakes classifier-free guidance into training: the conditional velocity is replaced by the guided
field `v_g`, so the one-step sampler needs no guidance at inference. Every random number is drawn by the
caller (from the cell's generator) and passed in.
"""
from __future__ import annotations

import torch


def guided_velocity(
    v_c: torch.Tensor, u_cond: torch.Tensor, u_uncond: torch.Tensor, omega: float, mix: float
) -> torch.Tensor:
    """`v_g = omega * v_c + mix * u(z, t, t | y) + (1 - omega - mix) * u(z, t, t | none)` (docs/method.md 2).

    `u_cond` and `u_uncond` are the network's instantaneous velocities (r = t) with and without the label,
    under stop-gradient (the caller evaluates them without a graph). `v_g` replaces `v_c` everywhere: the
    target, the conditional part of the tangent and the anchor. `omega = 1, mix = 0` gives `v_c` back.
    MeanFlow's names are `w` and `kappa`; docs/method.md renames them to keep `kappa` for section 4.
    """
    return omega * v_c + mix * u_cond + (1.0 - omega - mix) * u_uncond


def guidance_active(t: torch.Tensor, dropped: torch.Tensor, t_min: float, t_max: float) -> torch.Tensor:
    """Where `v_g` applies: t in the closed interval [t_min, t_max] and the label kept; elsewhere `v_g = v_c`."""
    return (t >= t_min) & (t <= t_max) & ~dropped


def drop_labels(
    y: torch.Tensor, draws: torch.Tensor, p: float, null_class: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Label dropout: `(labels, dropped)` with `y_i` replaced by `null_class` where `draws_i < p`.

    `draws` are the caller's uniform [0, 1) numbers, one per sample, so the dropout is a pure function of
    the cell's random stream (p = 0 keeps every label, p = 1 drops all).
    """
    if draws.shape != y.shape:
        raise ValueError(f"draws must have the shape of y {tuple(y.shape)}, got {tuple(draws.shape)}")
    dropped = draws < p
    return torch.where(dropped, torch.full_like(y, null_class), y), dropped
