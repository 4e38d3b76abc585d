"""Sliced Wasserstein SW1 and SW2 under projections fixed by a recorded seed (docs/method.md 5).

The directions come from POT (`ot.sliced.get_random_projections`); the distance along each direction is the
equal-weight 1-D optimal transport between the sorted projections, which is what
`ot.sliced_wasserstein_distance` computes for two uniform point clouds of the same size, in one sort
instead of POT's general quantile search (about 20x faster at 10k points x 1000 directions; the test suite
checks the two agree). Anyone can recompute a recorded figure from `samples.npz` with
`ot.sliced_wasserstein_distance(generated, reference, projections=projections(d, L, seed), p=p)`.
"""
from __future__ import annotations

import numpy as np

PROJECTIONS_RECIPE = (
    "ot.sliced.get_random_projections(d, n_projections, seed=projection_seed) on the NumPy backend: "
    "Gaussian directions normalised to unit length (columns of a (d, L) array); "
    "SW_p = (mean over projections of W_p^p)^(1/p), as ot.sliced_wasserstein_distance(..., projections=P, p=p)"
)


def projections(dim: int, n_projections: int, seed: int) -> np.ndarray:
    """The fixed (dim, L) unit directions; NumPy backend, so the same seed gives the same directions
    whatever array type the samples arrive in (POT's own seeding differs between NumPy and torch)."""
    import ot  # POT pulls in scipy.stats and scikit-learn (seconds): only when a distance is measured

    return ot.sliced.get_random_projections(dim, n_projections, seed=seed)


def sliced_wasserstein(
    generated: np.ndarray, reference: np.ndarray, n_projections: int, seed: int
) -> dict[str, float]:
    """SW1 and SW2 between two equally weighted point clouds of the same size (N, d)."""
    x = np.asarray(generated, dtype=np.float64)
    y = np.asarray(reference, dtype=np.float64)
    if x.ndim != 2 or x.shape != y.shape:
        raise ValueError(f"samples must be two (N, d) arrays of the same shape, got {x.shape} and {y.shape}")
    p = projections(x.shape[1], n_projections, seed)
    # (L, N): sorting each direction's projections pairs the quantiles, the 1-D optimal coupling.
    # Projections are sorted in float32 (half the time of float64; relative error ~1e-7), summed in float64.
    gap = np.abs(np.sort((p.T @ x.T).astype(np.float32), axis=1) - np.sort((p.T @ y.T).astype(np.float32), axis=1))
    gap = gap.astype(np.float64)
    return {"sw1": float(gap.mean()), "sw2": float(np.sqrt((gap**2).mean()))}
