"""Sliced Wasserstein SW1 and SW2 (docs/method.md 5): the split quantile estimator the records use, and the
sample-against-sample estimator of records written before it.

Along one direction, SW compares sorted projections (the 1-D optimal coupling pairs quantiles). The
`quantile` estimator compares each member's N generated points with the reference *distribution* rather than
with N reference points: a reference pool of m*N points is projected, sorted and reduced to N block means per
direction (block i: the pool's ranks i*m .. i*m + m - 1), the reference's quantile function averaged over
[i/N, (i+1)/N); the generated points' sorted projections are compared with those block means. The evaluation is
cut into K independent splits (disjoint generated points, disjoint pools, each with its own rotation of the
directions); the estimate is the mean over the splits and its standard error their SD / sqrt(K).

With m = 1 and one split, the comparison is sample against sample, which is what
`ot.sliced_wasserstein_distance` computes for two uniform point clouds of the same size (the tests check it);
the `samples` estimator is that, with POT's random directions (`projections`), as records before schema 3 hold.
"""
from __future__ import annotations

from typing import Any

import numpy as np

ESTIMATORS = ("quantile", "samples")
PROJECTIONS_RECIPE = (
    "ot.sliced.get_random_projections(d, n_projections, seed=projection_seed) on the NumPy backend: "
    "Gaussian directions normalised to unit length (columns of a (d, L) array); "
    "SW_p = (mean over projections of W_p^p)^(1/p), as ot.sliced_wasserstein_distance(..., projections=P, p=p)"
)
DIRECTIONS_RECIPE = (
    "per split: in 2-D, L directions evenly spaced over a half turn, angles (j + U) * pi / L with one uniform U; "
    "in d > 2, stacked Haar-random orthogonal d x d blocks (QR of a Gaussian matrix, signs fixed), the first L "
    "columns. SW_p = (mean over directions of W_p^p)^(1/p) against the reference pool's block means; the record's "
    "value is the mean over the splits"
)


def projections(dim: int, n_projections: int, seed: int) -> np.ndarray:
    """The fixed (dim, L) unit directions of the `samples` estimator; NumPy backend, so the same seed gives the
    same directions whatever array type the samples arrive in (POT's own seeding differs between backends)."""
    import ot  # POT pulls in scipy.stats and scikit-learn (seconds): only when a distance is measured

    return ot.sliced.get_random_projections(dim, n_projections, seed=seed)


def directions(dim: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """(dim, n) unit directions: evenly spaced with one random rotation in 2-D (the integral over the half
    circle by the trapezoid rule, which on a smooth periodic integrand leaves almost no direction noise);
    orthogonal blocks in d > 2 (a whole block sums the quadratic part of W1 along a direction to a constant:
    on trained cells, 2 to 4 times less variance than independent directions with 64 at d = 32, two whole
    blocks; none measurable at d = 128, half of one: docs/evaluation.md)."""
    if dim == 2:
        angles = (np.arange(n) + rng.uniform()) * np.pi / n
        return np.stack([np.cos(angles), np.sin(angles)])
    blocks = []
    for _ in range(-(-n // dim)):
        q, r = np.linalg.qr(rng.standard_normal((dim, dim)))
        blocks.append(q * np.sign(np.diag(r)))  # the sign fix makes Q Haar-distributed
    return np.concatenate(blocks, axis=1)[:, :n]


def _sorted_projections(points: np.ndarray, dirs: np.ndarray) -> np.ndarray:
    """(..., L, n) float32: each direction's projections of the (..., n, d) points, sorted. Sorting is the
    whole cost; NumPy sorts float32 several times faster than torch on the CPU (relative error ~1e-7; sums
    over the sorted values are taken in float64)."""
    x = np.asarray(points, dtype=np.float32)
    return np.sort(np.matmul(dirs.T.astype(np.float32), np.swapaxes(x, -1, -2)), axis=-1)


def reference_quantiles(pool: np.ndarray, dirs: np.ndarray, n_levels: int) -> np.ndarray:
    """(L, n_levels): the pool's sorted projections averaged over consecutive blocks of len(pool) / n_levels
    ranks (the reference's quantile function averaged over each [i/N, (i+1)/N))."""
    m, rest = divmod(len(pool), n_levels)
    if rest:
        raise ValueError(f"a pool of {len(pool)} points does not split into {n_levels} blocks of equal size")
    s = _sorted_projections(pool, dirs)
    return s.reshape(s.shape[0], n_levels, m).mean(axis=-1, dtype=np.float64)


def sw_to_quantiles(points: np.ndarray, dirs: np.ndarray, quantiles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """SW1 and SW2 of each set of (E, n, d) points against the (L, n) reference block means: two (E,) arrays."""
    gap = _sorted_projections(points, dirs).astype(np.float64) - quantiles
    return np.abs(gap).mean(axis=(-2, -1)), np.sqrt((gap**2).mean(axis=(-2, -1)))


def split_estimate(points: list[np.ndarray], pools: list[np.ndarray], dirs: list[np.ndarray]) -> dict[str, np.ndarray]:
    """The quantile estimator over K splits: `points[k]` (E, n_k, d) generated by E members in split k,
    `pools[k]` the split's reference pool (m * n_k, d), `dirs[k]` its (d, L) directions. Returns per-split
    values `sw1`, `sw2` of shape (E, K)."""
    sw1, sw2 = [], []
    for x, pool, p in zip(points, pools, dirs):
        a, b = sw_to_quantiles(x, p, reference_quantiles(pool, p, x.shape[-2]))
        sw1.append(a)
        sw2.append(b)
    return {"sw1": np.stack(sw1, axis=-1), "sw2": np.stack(sw2, axis=-1)}


def summarise_splits(values: np.ndarray) -> tuple[float, float | None]:
    """The estimate (mean over the K splits) and its standard error (their SD / sqrt(K); None for K = 1)."""
    values = np.asarray(values, dtype=np.float64)
    se = float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else None
    return float(values.mean()), se


def sliced_wasserstein(
    generated: np.ndarray, reference: np.ndarray, n_projections: int, seed: int
) -> dict[str, float]:
    """The `samples` estimator: SW1 and SW2 between two equally weighted point clouds of the same size (N, d)
    over POT's random directions."""
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


def check_settings(ev: Any) -> None:
    """The evaluation keys this module reads (`eval.estimator`, `eval.reference_ratio`, `eval.n_splits`,
    `eval.draw`); ValueError naming the key."""
    if ev.get("estimator") not in ESTIMATORS:
        raise ValueError(f"eval.estimator: expected one of {ESTIMATORS}, got {ev.get('estimator')!r}")
    for key, low in (("reference_ratio", 1), ("n_splits", 1), ("draw", 0)):
        v = ev.get(key)
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise ValueError(f"eval.{key}: expected an integer >= {low}, got {v!r}")
    if ev.get("n_splits") > ev.get("n_samples"):
        raise ValueError(f"eval.n_splits: {ev.get('n_splits')} splits of eval.n_samples={ev.get('n_samples')} points "
                         "leave a split empty")
