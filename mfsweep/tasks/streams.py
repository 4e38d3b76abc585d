"""Per-cell random streams (docs/design.md, "Execution modes").

Every random draw of a cell (initial weights, data, noise, t and r, evaluation noise, the reference set,
gradient-variance replicas) comes from its own `torch.Generator`, derived from the cell's seed and the
draw's purpose, and is made outside any batched computation. So a member of a packed ensemble draws
exactly the numbers a single run with the same seed draws, and cells that share a seed but differ in
alpha see the same data, noise and times (common random numbers across the alpha axis).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Protocol, Sequence

import numpy as np
import torch

from mfsweep.method.time import sample_t_r

# Appended only: a purpose's index seeds its stream, so reordering would change every recorded cell.
_PURPOSES = ("init", "train", "eval", "reference", "gradvar", "diagnostics", "floor", "proxy", "pool", "directions")


def derive_seed(seed: int, purpose: str, draw: int = 0) -> int:
    """A 63-bit seed for (`seed`, `purpose`, evaluation `draw`), independent across all three. Draw 0 is the
    stream of records written before draws existed (the entropy list is unchanged)."""
    entropy = [int(seed), _PURPOSES.index(purpose)] + ([int(draw)] if draw else [])
    state = np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0]
    return int(state) & (2**63 - 1)


def generator(seed: int, purpose: str, draw: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(derive_seed(seed, purpose, draw))


@contextlib.contextmanager
def single_threaded() -> Iterator[None]:
    """Run tiny tensor ops on one thread: per-cell draws are hundreds of ops on a few hundred numbers, where
    intra-op threading only adds synchronisation (up to 15x slower on a busy 2-core machine)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


class Sampler(Protocol):
    dim: int

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor: ...


@dataclass
class VectorBatch:
    """A training batch for E members: x, e (E, B, d); t, r (E, B)."""

    x: torch.Tensor
    e: torch.Tensor
    t: torch.Tensor
    r: torch.Tensor


class VectorStreams:
    """The training streams of E cells drawing from a vector dataset (2-D sets, Gaussian mixtures)."""

    def __init__(self, dataset: Sampler, seeds: Sequence[int], purpose: str = "train"):
        self.dataset = dataset
        self.generators = [generator(s, purpose) for s in seeds]

    def draw(self, batch_size: int, time_cfg: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> VectorBatch:
        """A batch per cell; `time_cfg` is the (t, r) distribution's keys, shared or one dict per cell."""
        cfgs = [time_cfg] * len(self.generators) if isinstance(time_cfg, Mapping) else list(time_cfg)
        with single_threaded():
            return self._draw(batch_size, cfgs)

    def _draw(self, batch_size: int, time_cfgs: list[Mapping[str, Any]]) -> VectorBatch:
        xs, es, ts, rs = [], [], [], []
        for g, time_cfg in zip(self.generators, time_cfgs):
            xs.append(self.dataset.sample(batch_size, g))
            es.append(torch.randn(batch_size, self.dataset.dim, generator=g))
            t, r = sample_t_r(batch_size, g, **time_cfg)
            ts.append(t)
            rs.append(r)
        return VectorBatch(torch.stack(xs), torch.stack(es), torch.stack(ts), torch.stack(rs))

    def get_state(self) -> list[torch.Tensor]:
        return [g.get_state() for g in self.generators]

    def set_state(self, states: list[torch.Tensor]) -> None:
        for g, s in zip(self.generators, states):
            g.set_state(s)
