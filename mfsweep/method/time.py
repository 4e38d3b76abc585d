"""(t, r) sampling for MeanFlow training (docs/method.md 2, "Time sampling")."""
from __future__ import annotations

import torch

TIME_DISTRIBUTIONS = ("logit_normal", "uniform")


def sample_t_r(
    n: int,
    generator: torch.Generator,
    dist: str = "logit_normal",
    mu: float = -0.4,
    sigma: float = 1.0,
    ratio: float = 0.25,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw `n` pairs `0 <= r <= t <= 1`.

    Two values from `dist` (logit-normal(mu, sigma) or uniform on [0, 1]); `t = max`, `r = min`;
    with probability `1 - ratio` the pair is collapsed to `r = t` (plain flow matching for that sample).
    Every draw comes from `generator`, in a fixed order, so a seed fixes the stream.
    """
    if dist == "logit_normal":
        ab = torch.sigmoid(mu + sigma * torch.randn(2, n, generator=generator))
    elif dist == "uniform":
        ab = torch.rand(2, n, generator=generator)
    else:
        raise ValueError(f"time.dist must be one of {TIME_DISTRIBUTIONS}, got {dist!r}")
    t, r = ab.max(dim=0).values, ab.min(dim=0).values
    keep = torch.rand(n, generator=generator) < ratio
    return t, torch.where(keep, r, t)
