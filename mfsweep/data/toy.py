"""The six 2-D sets, with the shapes and scales of FFJORD's toy generators (Grathwohl et al., 2019,
`lib/toy_data.py`), drawn from an explicit `torch.Generator` so that a seed fixes the data.

FFJORD draws fixed per-class counts or grids per batch from the global NumPy RNG; here every sample is
i.i.d. from the same distribution (uniform arc positions, uniformly drawn classes), which is what an
infinite training stream and a fresh reference set need.
"""
from __future__ import annotations

import math

import torch


def _rand(n: int, g: torch.Generator) -> torch.Tensor:
    return torch.rand(n, generator=g)


def _randn(*shape: int, g: torch.Generator) -> torch.Tensor:
    return torch.randn(*shape, generator=g)


def checkerboard(n: int, g: torch.Generator) -> torch.Tensor:
    x1 = _rand(n, g) * 4 - 2
    x2 = _rand(n, g) - torch.randint(0, 2, (n,), generator=g) * 2
    x2 = x2 + torch.floor(x1) % 2
    return torch.stack([x1, x2], dim=1) * 2


def eight_gaussians(n: int, g: torch.Generator) -> torch.Tensor:
    angles = torch.randint(0, 8, (n,), generator=g) * (math.pi / 4)
    centers = 4.0 * torch.stack([torch.cos(angles), torch.sin(angles)], dim=1)
    return (centers + 0.5 * _randn(n, 2, g=g)) / 1.414


def two_moons(n: int, g: torch.Generator) -> torch.Tensor:
    theta = _rand(n, g) * math.pi
    inner = torch.randint(0, 2, (n,), generator=g).bool()
    x = torch.where(inner, 1 - torch.cos(theta), torch.cos(theta))
    y = torch.where(inner, 1 - torch.sin(theta) - 0.5, torch.sin(theta))
    pts = torch.stack([x, y], dim=1) + 0.1 * _randn(n, 2, g=g)
    return pts * 2 + torch.tensor([-1.0, -0.2])


def swiss_roll(n: int, g: torch.Generator) -> torch.Tensor:
    # sklearn.make_swiss_roll(noise=1.0) keeps (x, z) = (t cos t, t sin t) + N(0, 1); FFJORD divides by 5.
    t = 1.5 * math.pi * (1 + 2 * _rand(n, g))
    pts = torch.stack([t * torch.cos(t), t * torch.sin(t)], dim=1) + _randn(n, 2, g=g)
    return pts / 5


def two_spirals(n: int, g: torch.Generator) -> torch.Tensor:
    m = torch.sqrt(_rand(n, g)) * 540 * (2 * math.pi) / 360
    d = torch.stack([-torch.cos(m) * m, torch.sin(m) * m], dim=1) + _rand(2 * n, g).view(n, 2) * 0.5
    sign = torch.where(torch.randint(0, 2, (n, 1), generator=g).bool(), -1.0, 1.0)
    return sign * d / 3 + 0.1 * _randn(n, 2, g=g)


def pinwheel(n: int, g: torch.Generator) -> torch.Tensor:
    radial_std, tangential_std, num_classes, rate = 0.3, 0.1, 5, 0.25
    labels = torch.randint(0, num_classes, (n,), generator=g)
    features = _randn(n, 2, g=g) * torch.tensor([radial_std, tangential_std])
    features[:, 0] += 1.0
    angles = labels * (2 * math.pi / num_classes) + rate * torch.exp(features[:, 0])
    cos, sin = torch.cos(angles), torch.sin(angles)
    rotated = torch.stack([features[:, 0] * cos + features[:, 1] * sin, -features[:, 0] * sin + features[:, 1] * cos], 1)
    return 2 * rotated


_GENERATORS = {
    f.__name__: f for f in (checkerboard, eight_gaussians, two_moons, swiss_roll, two_spirals, pinwheel)
}
TOY_NAMES = tuple(_GENERATORS)


class ToyDataset:
    """One of the six 2-D sets as an infinite i.i.d. sampler."""

    dim = 2

    def __init__(self, name: str):
        if name not in _GENERATORS:
            raise ValueError(f"dataset.name must be one of {TOY_NAMES}, got {name!r}")
        self.name = name
        self._draw = _GENERATORS[name]

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """`n` i.i.d. points, (n, 2) float32; all randomness from `generator`."""
        return self._draw(n, generator).float()
