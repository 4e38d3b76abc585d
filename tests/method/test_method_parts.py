"""Time sampling, samplers and the EMA (docs/method.md 2)."""
from __future__ import annotations

import pytest
import torch

from mfsweep.method.ema import ema_update
from mfsweep.method.sampler import sample, time_grid
from mfsweep.method.time import sample_t_r


@pytest.mark.parametrize("dist", ["logit_normal", "uniform"])
def test_time_pairs_are_ordered_with_the_requested_ratio(dist):
    t, r = sample_t_r(20000, torch.Generator().manual_seed(0), dist=dist, ratio=0.25)
    assert ((0 <= r) & (r <= t) & (t <= 1)).all()
    assert (r < t).float().mean().item() == pytest.approx(0.25, abs=0.015)


def test_logit_normal_matches_its_definition():
    t, r = sample_t_r(50000, torch.Generator().manual_seed(1), mu=-0.4, sigma=1.0, ratio=1.0)
    # t = max of two logit-normals: P(t <= 0.5) = P(N(-0.4, 1) <= 0)^2 = Phi(0.4)^2.
    phi = 0.5 * (1 + torch.erf(torch.tensor(0.4) / 2**0.5)).item()
    assert (t <= 0.5).float().mean().item() == pytest.approx(phi**2, abs=0.01)
    assert (r <= 0.5).float().mean().item() == pytest.approx(1 - (1 - phi) ** 2, abs=0.01)


def test_time_sampling_is_seeded_and_validated():
    a = sample_t_r(100, torch.Generator().manual_seed(5))
    b = sample_t_r(100, torch.Generator().manual_seed(5))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    with pytest.raises(ValueError, match="time.dist"):
        sample_t_r(10, torch.Generator(), dist="beta")


def test_one_step_sampler_is_e_minus_u():
    u_fn = lambda z, r, t: 2 * z + (t - r)[..., None]  # noqa: E731
    e = torch.randn(5, 3)
    torch.testing.assert_close(sample(u_fn, e, 1), e - (2 * e + 1))


def test_n_step_sampler_follows_the_grid():
    """With u(z, r, t) = z * (t - r) the update is z <- z (1 - dt^2), checked step by step."""
    u_fn = lambda z, r, t: z * (t - r)[..., None]  # noqa: E731
    e = torch.randn(4, 2)
    want = e.clone()
    grid = time_grid(4)
    for a, b in zip(grid[:-1], grid[1:]):
        want = want - (a - b) * want * (a - b)
    torch.testing.assert_close(sample(u_fn, e, 4), want)
    with pytest.raises(ValueError, match="n_steps"):
        time_grid(0)


def test_ema_update_is_elementwise_lerp():
    ema, p = [torch.tensor([1.0, 2.0])], [torch.tensor([3.0, 6.0])]
    ema_update(ema, p, decay=0.75)
    torch.testing.assert_close(ema[0], torch.tensor([1.5, 3.0]))
