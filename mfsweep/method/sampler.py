"""One-step and n-step MeanFlow samplers (docs/method.md 2, "Sampling")."""
from __future__ import annotations

from typing import Callable

import torch

UFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def time_grid(n_steps: int) -> torch.Tensor:
    """The uniform grid `1 = t_0 > t_1 > ... > t_n = 0`."""
    if n_steps < 1:
        raise ValueError(f"n_steps must be >= 1, got {n_steps}")
    return torch.linspace(1.0, 0.0, n_steps + 1)


@torch.no_grad()
def sample(u_fn: UFn, noise: torch.Tensor, n_steps: int = 1, time_shape: tuple[int, ...] | None = None) -> torch.Tensor:
    """Integrate from noise (t = 1) to data (t = 0): `z_{k+1} = z_k - (t_k - t_{k+1}) u(z_k, t_{k+1}, t_k)`.

    With `n_steps = 1` this is the one-step generator `x = e - u(e, 0, 1)`. `time_shape` is the shape of the
    per-sample time tensors the network takes (default: `noise.shape[:-1]`, one time per vector sample).
    """
    shape = noise.shape[:-1] if time_shape is None else time_shape
    z = noise
    grid = time_grid(n_steps).to(noise)
    for t_k, t_next in zip(grid[:-1], grid[1:]):
        t = torch.full(shape, float(t_k), dtype=noise.dtype, device=noise.device)
        r = torch.full(shape, float(t_next), dtype=noise.dtype, device=noise.device)
        z = z - (t_k - t_next) * u_fn(z, r, t)
    return z
