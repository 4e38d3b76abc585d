"""The six 2-D sets: shapes, scales, seeding."""
from __future__ import annotations

import numpy as np
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


# --- written against mutants and bugs that once survived the suite (docs/testing.md, "Where the mutant tests live") ---


def _ffjord_pinwheel(batch_size: int, rng: np.random.RandomState) -> np.ndarray:
    radial_std, tangential_std, num_classes, rate = 0.3, 0.1, 5, 0.25
    num_per_class = batch_size // 5
    rads = np.linspace(0, 2 * np.pi, num_classes, endpoint=False)
    features = rng.randn(num_classes * num_per_class, 2) * np.array([radial_std, tangential_std])
    features[:, 0] += 1.0
    labels = np.repeat(np.arange(num_classes), num_per_class)
    angles = rads[labels] + rate * np.exp(features[:, 0])
    rotations = np.stack([np.cos(angles), -np.sin(angles), np.sin(angles), np.cos(angles)])
    rotations = np.reshape(rotations.T, (-1, 2, 2))
    return 2 * rng.permutation(np.einsum("ti,tij->tj", features, rotations))


def _ffjord_two_spirals(batch_size: int, rng: np.random.RandomState) -> np.ndarray:
    n = np.sqrt(rng.rand(batch_size // 2, 1)) * 540 * (2 * np.pi) / 360
    d1x = -np.cos(n) * n + rng.rand(batch_size // 2, 1) * 0.5
    d1y = np.sin(n) * n + rng.rand(batch_size // 2, 1) * 0.5
    x = np.vstack((np.hstack((d1x, d1y)), np.hstack((-d1x, -d1y)))) / 3
    return x + rng.randn(*x.shape) * 0.1


def _angular_moment(x: np.ndarray, k: int) -> complex:
    """E[r exp(i k theta)]: sensitive to the arms' orientation, which the covariance of a k-fold set is not."""
    return np.mean(np.abs(x[:, 0] + 1j * x[:, 1]) * np.exp(1j * k * np.angle(x[:, 0] + 1j * x[:, 1])))


@pytest.mark.parametrize("name", ["pinwheel", "two_spirals"])
def test_moments_and_radii_match_ffjord_generators(name):
    """Means, covariances, radius quantiles and (pinwheel) the 5-fold angular moment, within Monte-Carlo
    tolerance of 40k draws; a scale of 0.8 moves the covariance by 36 % and the radii by 20 %."""
    n = 40000
    ref_fn = _ffjord_pinwheel if name == "pinwheel" else _ffjord_two_spirals
    ref = ref_fn(n, np.random.RandomState(0))
    ours = ToyDataset(name).sample(n, torch.Generator().manual_seed(0)).double().numpy()
    np.testing.assert_allclose(ours.mean(0), ref.mean(0), atol=0.03)
    np.testing.assert_allclose(np.cov(ours.T), np.cov(ref.T), atol=0.04, rtol=0.03)
    qs = [0.1, 0.25, 0.5, 0.75, 0.9]
    np.testing.assert_allclose(np.quantile(np.linalg.norm(ours, axis=1), qs),
                               np.quantile(np.linalg.norm(ref, axis=1), qs), rtol=0.03, atol=0.02)
    if name == "pinwheel":
        m_ours, m_ref = _angular_moment(ours, 5), _angular_moment(ref, 5)
        assert abs(m_ref) > 0.3  # the statistic is not trivially zero
        assert abs(m_ours - m_ref) < 0.05, (m_ours, m_ref)


@pytest.mark.parametrize("scale", [0.8, 0.75])
@pytest.mark.parametrize("name", ["pinwheel", "two_spirals"])
def test_the_moment_check_rejects_a_rescaled_set(name, scale):
    """The comparison above is sharp enough to fail for the mutants that once survived (x 0.8, x 0.75)."""
    n = 40000
    ref_fn = _ffjord_pinwheel if name == "pinwheel" else _ffjord_two_spirals
    ref = ref_fn(n, np.random.RandomState(0))
    scaled = scale * ToyDataset(name).sample(n, torch.Generator().manual_seed(0)).double().numpy()
    with pytest.raises(AssertionError):
        np.testing.assert_allclose(np.cov(scaled.T), np.cov(ref.T), atol=0.04, rtol=0.03)
