"""Time sampling, samplers and the EMA (docs/method.md 2)."""
from __future__ import annotations

import pytest
import torch
from hand_mutants import hand_mutant_tests

from mfsweep.method.ema import ema_update
from mfsweep.method.sampler import sample, time_grid
from mfsweep.method.time import sample_t_r

F64 = torch.float64


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


# --- written against mutants and bugs that once survived the suite (docs/testing.md, "Where the mutant tests live") ---


@pytest.mark.parametrize("dist", ["logit_normal", "uniform"])
def test_sample_t_r_is_the_documented_recipe_draw_by_draw(dist):
    """Defaults (logit-normal(-0.4, 1), ratio 0.25) and the fixed draw order, recomputed from a twin generator:
    two values (sigmoid(mu + sigma N) or U[0, 1]), t = max, r = min, then one U[0, 1) per pair to keep r."""
    from mfsweep.method.time import sample_t_r

    n = 4000
    t, r = sample_t_r(n, torch.Generator().manual_seed(7), dist=dist)
    g = torch.Generator().manual_seed(7)
    ab = torch.sigmoid(-0.4 + 1.0 * torch.randn(2, n, generator=g)) if dist == "logit_normal" else torch.rand(2, n, generator=g)
    keep = torch.rand(n, generator=g) < 0.25
    torch.testing.assert_close(t, ab.max(0).values, rtol=0, atol=0)
    torch.testing.assert_close(r, torch.where(keep, ab.min(0).values, ab.max(0).values), rtol=0, atol=0)
    assert abs(float((r < t).double().mean()) - 0.25) < 0.03


def test_ema_update_per_member_decay_lerps_each_member_by_its_own_weight():
    """decay (E,) for parameters stacked along E: member e moves by (1 - decay_e) of the gap, by hand."""
    ema = [torch.zeros(3, 2, 2, dtype=F64), torch.zeros(3, 4, dtype=F64)]
    params = [torch.ones(3, 2, 2, dtype=F64), torch.full((3, 4), 2.0, dtype=F64)]
    decay = torch.tensor([0.0, 0.5, 0.9], dtype=torch.float32)  # float32 decay on float64 parameters
    ema_update(ema, params, decay)
    for e, keep in enumerate((0.0, 0.5, 0.9)):
        torch.testing.assert_close(ema[0][e], torch.full((2, 2), 1 - keep, dtype=F64), rtol=1e-6, atol=0)
        torch.testing.assert_close(ema[1][e], torch.full((4,), 2 * (1 - keep), dtype=F64), rtol=1e-6, atol=0)
    assert ema[0].dtype == F64
    ema2 = [torch.tensor([4.0])]
    ema_update(iter(ema2), iter([torch.tensor([0.0])]), 0.25)  # generators work too
    torch.testing.assert_close(ema2[0], torch.tensor([1.0]))


def test_sampler_passes_r_then_t_and_steps_from_noise_to_data():
    """u(z, r, t) = z r + t: one step at (r, t) = (0, 1) gives e - 1; two steps (1 -> 0.5 -> 0) by hand."""
    e = torch.tensor([[1.0, 2.0]], dtype=F64)
    u_fn = lambda z, r, t: z * r[..., None] + t[..., None]  # noqa: E731
    torch.testing.assert_close(sample(u_fn, e, 1), e - 1)
    z1 = e - 0.5 * (e * 0.5 + 1.0)
    torch.testing.assert_close(sample(u_fn, e, 2), z1 - 0.5 * (z1 * 0.0 + 0.5))
    seen = []
    sample(lambda z, r, t: seen.append((r.shape, t.shape)) or z * 0, torch.zeros(2, 3, 4), 1,
                             time_shape=(2,))
    assert seen == [(torch.Size([2]), torch.Size([2]))]


# --- hand-made mutants of the decorated functions mutmut skips (tests/hand_mutants.py, docs/testing.md) ---

EMA = ["mfsweep.method.ema", "ema_update"]
EMA_DETECT = [test_ema_update_is_elementwise_lerp,
              test_ema_update_per_member_decay_lerps_each_member_by_its_own_weight]
SAMPLE = ["mfsweep.method.sampler", "sample"]
SAMPLE_DETECT = [test_one_step_sampler_is_e_minus_u, test_n_step_sampler_follows_the_grid,
                 test_sampler_passes_r_then_t_and_steps_from_noise_to_data]
# (id, module, qualname, old, new, detectors): `old` occurs exactly once in the function's source.
MUTANTS = [
    ("ema-decay-for-1-minus-decay", *EMA, "torch._foreach_lerp_(ema, params, 1.0 - decay)", "torch._foreach_lerp_(ema, params, decay)", EMA_DETECT),
    ("ema-tensor-weight-is-decay", *EMA, "weight = 1.0 - decay", "weight = decay", EMA_DETECT),
    ("ema-tensor-weight-not-per-member", *EMA, ".view(-1, *([1] * (p.dim() - 1)))", ".mean()", EMA_DETECT),
    ("ema-tensor-weight-float32", *EMA, "weight.to(p.dtype)", "weight", EMA_DETECT),
    ("sample-step-sign", *SAMPLE, "z - (t_k - t_next) * u_fn", "z + (t_k - t_next) * u_fn", SAMPLE_DETECT),
    ("sample-r-t-swapped", *SAMPLE, "u_fn(z, r, t)", "u_fn(z, t, r)", SAMPLE_DETECT),
    ("sample-grid-reversed", *SAMPLE, "zip(grid[:-1], grid[1:])", "zip(grid[1:], grid[:-1])", SAMPLE_DETECT),
    ("sample-time-shape-ignored", *SAMPLE, "shape = noise.shape[:-1] if time_shape is None else time_shape",
     "shape = noise.shape[:-1]", SAMPLE_DETECT),
]
test_an_unchanged_copy_passes_the_same_tests, test_hand_mutant_is_detected = hand_mutant_tests(MUTANTS)
