"""Total gradient variance over independent minibatches (docs/method.md 5).

Every K steps draw R independent minibatches, compute each minibatch gradient g_i (flattened, all
parameters, before clipping) and report `sum_i ||g_i - mean g||^2 / (R - 1)`. Gradients arrive one
replica at a time as `(E, P)` (one row per ensemble member), so memory stays at one running mean.
"""
from __future__ import annotations

import torch


def total_variance(grads: torch.Tensor) -> torch.Tensor:
    """`sum_i ||g_i - mean g||^2 / (R - 1)` for grads `(R, ..., P)`; one value per leading member."""
    if grads.shape[0] < 2:
        raise ValueError(f"gradient variance needs at least 2 replicas, got {grads.shape[0]}")
    return (grads - grads.mean(0)).pow(2).sum(-1).sum(0) / (grads.shape[0] - 1)


class StreamingTotalVariance:
    """Welford's update of the same quantity, one replica `(E, P)` at a time, accumulated in float64."""

    def __init__(self) -> None:
        self.n, self.mean, self.m2 = 0, None, None

    def add(self, g: torch.Tensor) -> None:
        g = g.detach().double()
        self.n += 1
        if self.mean is None:
            self.mean, self.m2 = g.clone(), torch.zeros(g.shape[:-1], dtype=torch.float64, device=g.device)
            return
        delta = g - self.mean
        self.mean += delta / self.n
        self.m2 += (delta * (g - self.mean)).sum(-1)

    def value(self) -> torch.Tensor:
        if self.n < 2:
            raise ValueError(f"gradient variance needs at least 2 replicas, got {self.n}")
        return self.m2 / (self.n - 1)
