"""Datasets. Vector datasets expose `dim` and `sample(n, generator)`; those with an exact posterior (Gaussian
mixtures, finite sets) also expose `marginal_velocity(z, t)` (the oracle proxy of docs/method.md 3), `sigma2` and
`sample_posterior`."""
from __future__ import annotations

from typing import Any, Mapping

from mfsweep.data.toy import TOY_NAMES, ToyDataset
from mfsweep.method.errors import ConfigValueError

VECTOR_DATASETS = TOY_NAMES + ("dgmm",)
IMAGE_DATASETS = ("imagenet_latents", "digits")  # `mfsweep.data.images.make_image_data`
GMM_KEYS = ("n_components", "scale", "spread", "means_seed")


def make_vector_dataset(name: str, dim: int = 2, finite_size: int | None = None, finite_seed: int = 0,
                        **kwargs: Any):
    """The vector dataset `name` (`dataset.name`) from its config keys: `dim`, the Gaussian-mixture keys for
    `dgmm`, and `finite_size` (null: the distribution itself; N: a fixed set of N points drawn from it once
    with seed `finite_seed`, trained on as its empirical distribution, which has an exact posterior)."""
    if name not in VECTOR_DATASETS:
        raise ConfigValueError("dataset.name", f"must be one of {list(VECTOR_DATASETS)}, got {name!r}")
    allowed = GMM_KEYS if name == "dgmm" else ()
    if unknown := sorted(set(kwargs) - set(allowed)):
        raise ConfigValueError(f"dataset.{unknown[0]}", f"is not a key of dataset {name!r}")
    try:
        if name == "dgmm":
            from mfsweep.data.gmm import GaussianMixture

            base = GaussianMixture(dim, **kwargs)
        else:
            if dim != ToyDataset.dim:
                raise ConfigValueError("dataset.dim", f"must be {ToyDataset.dim} for the 2-D set {name!r}, got {dim!r}")
            base = ToyDataset(name)
        if finite_size is None:
            return base
        from mfsweep.data.finite import FiniteSet

        return FiniteSet(base, finite_size, finite_seed)
    except ConfigValueError:
        raise
    except ValueError as err:  # the sets check their own arguments, which are the dataset's keys: name the key
        key, _, message = str(err).partition(" ")
        raise ConfigValueError(key if key.startswith("dataset.") else f"dataset.{key}", message) from None


def check_dataset(node: Mapping[str, Any]) -> None:
    """ConfigValueError for the first bad key of the `dataset` node: each set checks its own (a vector set by
    building it, which is cheap; an image set by `mfsweep.data.images.check_image_data`)."""
    keys = {k: v for k, v in node.items() if k != "task"}
    if keys.get("name") in IMAGE_DATASETS:
        from mfsweep.data.images import check_image_data

        check_image_data(**keys)
    elif keys.get("name") in VECTOR_DATASETS:
        make_vector_dataset(**keys)
    else:
        raise ConfigValueError("dataset.name", f"must be one of {list(VECTOR_DATASETS + IMAGE_DATASETS)}, "
                                               f"got {keys.get('name')!r}")


def has_exact_posterior(node: Mapping[str, Any]) -> bool:
    """Whether the `dataset` node's posterior is known exactly (`EXACT_POSTERIOR`: the oracle proxy and exact
    diagnostics): a Gaussian mixture, or any vector set made finite with `finite_size` (whose empirical
    posterior is exact only because training draws from that same set)."""
    return node.get("name") in EXACT_POSTERIOR or node.get("finite_size") is not None


# Datasets whose posterior is known exactly (docs/method.md 3) whatever their keys.
EXACT_POSTERIOR = ("dgmm",)
