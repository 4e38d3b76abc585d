"""Datasets. Vector datasets expose `dim` and `sample(n, generator)`; those with an exact posterior (Gaussian
mixtures, finite sets) also expose `marginal_velocity(z, t)` (the oracle proxy of docs/method.md 3), `sigma2` and
`sample_posterior`."""
from __future__ import annotations

from typing import Any

from mfsweep.data.toy import TOY_NAMES, ToyDataset

VECTOR_DATASETS = TOY_NAMES + ("dgmm",)
GMM_KEYS = ("n_components", "scale", "spread", "means_seed")


def make_vector_dataset(name: str, dim: int = 2, finite_size: int | None = None, finite_seed: int = 0,
                        **kwargs: Any):
    """The vector dataset `name` (`dataset.name`) from its config keys: `dim`, the Gaussian-mixture keys for
    `dgmm`, and `finite_size` (null: the distribution itself; N: a fixed set of N points drawn from it once
    with seed `finite_seed`, trained on as its empirical distribution, which has an exact posterior)."""
    if name not in VECTOR_DATASETS:
        raise ValueError(f"dataset.name must be one of {VECTOR_DATASETS}, got {name!r}")
    allowed = GMM_KEYS if name == "dgmm" else ()
    if unknown := sorted(set(kwargs) - set(allowed)):
        raise ValueError(f"dataset.{unknown[0]} is not a key of dataset {name!r}")
    if name == "dgmm":
        from mfsweep.data.gmm import GaussianMixture

        base = GaussianMixture(dim, **kwargs)
    else:
        if dim != ToyDataset.dim:
            raise ValueError(f"dataset.dim must be {ToyDataset.dim} for {name!r}, got {dim!r}")
        base = ToyDataset(name)
    if finite_size is None:
        return base
    from mfsweep.data.finite import FiniteSet

    return FiniteSet(base, finite_size, finite_seed)
