"""The six 2-D sets: shapes, scales, seeding."""
from __future__ import annotations

import pytest
import torch

from mfsweep.data import make_vector_dataset
from mfsweep.data.toy import TOY_NAMES, ToyDataset

# Per-coordinate ranges that FFJORD's generators produce (loose bounds, 20k samples).
EXTENT = {"checkerboard": 4.0, "eight_gaussians": 4.5, "two_moons": 4.0, "swiss_roll": 4.0, "two_spirals": 4.5, "pinwheel": 4.5}


@pytest.mark.parametrize("name", TOY_NAMES)
def test_dataset_shape_values_and_seeding(name):
    ds = ToyDataset(name)
    x = ds.sample(20000, torch.Generator().manual_seed(0))
    assert x.shape == (20000, 2) and x.dtype == torch.float32
    assert torch.isfinite(x).all()
    assert x.abs().max() < EXTENT[name] and x.std(0).min() > 0.3
    same = ds.sample(20000, torch.Generator().manual_seed(0))
    other = ds.sample(20000, torch.Generator().manual_seed(1))
    assert torch.equal(x, same)
    assert not torch.allclose(x, other)


def test_draws_use_only_the_given_generator():
    torch.manual_seed(0)
    a = ToyDataset("two_spirals").sample(100, torch.Generator().manual_seed(3))
    torch.manual_seed(123)
    b = ToyDataset("two_spirals").sample(100, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


def test_checkerboard_occupies_alternate_squares():
    x = ToyDataset("checkerboard").sample(5000, torch.Generator().manual_seed(0)) / 2
    cells = (torch.floor(x[:, 0]) + torch.floor(x[:, 1])) % 2
    assert (cells == 0).all()


def test_eight_gaussians_centers():
    x = ToyDataset("eight_gaussians").sample(40000, torch.Generator().manual_seed(0))
    radius = x.norm(dim=1)
    assert radius.mean().item() == pytest.approx(4 / 1.414, rel=0.03)


def test_unknown_dataset_names_the_key():
    with pytest.raises(ValueError, match="dataset.name"):
        make_vector_dataset("spiral_galaxy")


@pytest.mark.parametrize("name", ["swiss_roll", "two_moons"])
def test_moments_match_ffjord_recipe_built_on_sklearn(name):
    """FFJORD builds these two from scikit-learn: same transform, same first and second moments."""
    import numpy as np
    from sklearn.datasets import make_moons, make_swiss_roll

    n = 40000
    if name == "swiss_roll":
        ref = make_swiss_roll(n_samples=n, noise=1.0, random_state=0)[0][:, [0, 2]] / 5
    else:
        ref = make_moons(n_samples=n, noise=0.1, random_state=0)[0] * 2 + np.array([-1, -0.2])
    ours = ToyDataset(name).sample(n, torch.Generator().manual_seed(0)).double().numpy()
    np.testing.assert_allclose(ours.mean(0), ref.mean(0), atol=0.03)
    np.testing.assert_allclose(np.cov(ours.T), np.cov(ref.T), atol=0.05, rtol=0.03)
