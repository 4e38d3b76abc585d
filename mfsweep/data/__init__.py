"""Datasets. Vector datasets expose `dim` and `sample(n, generator)`; those with an exact posterior also
expose `marginal_velocity(z, t)` (the oracle proxy of METHOD.md 3)."""
from __future__ import annotations

from typing import Any

from mfsweep.data.toy import TOY_NAMES, ToyDataset

VECTOR_DATASETS = TOY_NAMES + ("dgmm",)


def make_vector_dataset(name: str, **kwargs: Any):
    """The vector dataset `name` (`dataset.name`), built from its config keys."""
    if name in TOY_NAMES:
        return ToyDataset(name)
    if name == "dgmm":
        from mfsweep.data.gmm import GaussianMixture

        return GaussianMixture(**kwargs)
    raise ValueError(f"dataset.name must be one of {VECTOR_DATASETS}, got {name!r}")
