"""A fixed finite sample of a vector dataset (`dataset.finite_size`), so that its empirical distribution is
the training distribution and the oracle of docs/method.md 3 is exact for it."""
from __future__ import annotations

from numbers import Integral
from typing import Protocol

import torch

from mfsweep.data.gmm import EmpiricalPosterior


class _Sampler(Protocol):
    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor: ...


class FiniteSet(EmpiricalPosterior):
    """`size` points drawn once from `base` with `torch.Generator().manual_seed(seed)` (the same set for
    every cell, like the means of a Gaussian mixture), then sampled uniformly with replacement: training
    batches, evaluation references and the posterior all refer to this one finite set.

    The empirical oracle `marginal_velocity` (posterior weights over the points) is exact here ONLY because
    training draws x from this same finite set; for the continuous `base` it would be a biased proxy.
    """

    def __init__(self, base: _Sampler, size: int, seed: int = 0):
        for key, value, low in (("dataset.finite_size", size, 1), ("dataset.finite_seed", seed, 0)):
            if isinstance(value, bool) or not isinstance(value, Integral) or value < low:
                raise ValueError(f"{key} must be an int >= {low}, got {value!r}")
        super().__init__(base.sample(int(size), torch.Generator().manual_seed(int(seed))))
        self.name, self.size, self.seed = getattr(base, "name", type(base).__name__), int(size), int(seed)

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """`n` points of the set, uniformly with replacement, (n, d) float32 (the set's points exactly)."""
        return self.points[torch.randint(0, self.size, (n,), generator=generator)].float()
