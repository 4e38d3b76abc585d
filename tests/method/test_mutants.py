"""Unit tests that kill mutants `make mutation` found surviving in mfsweep/method, mfsweep/metrics and the MLP
(docs/testing.md lists each survivor and the test here that now kills it, or why it is equivalent)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mfsweep.method.gradvar import total_variance
from mfsweep.method.theory import AlphaStarEstimate, alpha_star_matrix, alpha_star_upper_bound, c_from_jacobian, mse_curve

F64 = torch.float64


def test_total_variance_needs_two_replicas_and_two_give_half_the_squared_difference():
    with pytest.raises(ValueError, match=r"needs at least 2 replicas, got 1$"):
        total_variance(torch.ones(1, 5))
    g = torch.randn(2, 3, 4, generator=torch.Generator().manual_seed(0), dtype=F64)
    torch.testing.assert_close(total_variance(g), ((g[0] - g[1]) ** 2).sum(-1) / 2)


def test_scalar_theory_functions_return_python_floats_by_hand():
    value = mse_curve(0.25, 3.0, 0.5, 0.2)
    assert isinstance(value, float) and value == pytest.approx(0.5 * (0.75 * 3 - 1) ** 2 + 0.0625 * 9 * 0.2)
    c = c_from_jacobian(0.5, 2.0, 3.0)
    assert isinstance(c, float) and c == pytest.approx(0.5 * 3.0 / 2.0)
    assert c_from_jacobian(0.0, 2.0, 3.0) == 0.0
    torch.testing.assert_close(c_from_jacobian(torch.tensor([0.5, 0.2], dtype=F64), 2.0, 3.0),
                               torch.tensor([0.75, 0.3], dtype=F64))


def test_alpha_star_estimate_is_clipped_to_the_unit_box():
    est = AlphaStarEstimate.from_sums(torch.tensor([3.0, -1.0, 0.5, 1.0]), torch.tensor([2.0, 2.0, 2.0, 0.0]))
    torch.testing.assert_close(est.value, torch.tensor([1.0, 0.0, 0.25, 0.0]))
    torch.testing.assert_close(est.unclipped, torch.tensor([1.5, -0.5, 0.25, 0.0]))


@pytest.mark.parametrize("with_bias", [False, True])
def test_matrix_forms_on_image_shaped_samples_by_hand(with_bias):
    """sample_ndim = 3 (latents (C, H, W)) with a linear u = M vec(z): J delta = M vec(delta); the sums by NumPy."""
    g = torch.Generator().manual_seed(1)
    b, m_draws = 5, 3
    mat = torch.randn(4, 4, generator=g, dtype=F64)

    def jvp_fn(z, r, t, dz, dr, dt):
        lin = lambda a: (a.flatten(-3) @ mat.T).reshape(a.shape)  # noqa: E731
        return lin(z), lin(dz)

    z = torch.randn(b, 1, 2, 2, generator=g, dtype=F64)
    t = torch.rand(b, generator=g, dtype=F64)
    r = t * torch.rand(b, generator=g, dtype=F64)
    delta = torch.randn(b, m_draws, 1, 2, 2, generator=g, dtype=F64)
    bias = torch.randn(b, 1, 2, 2, generator=g, dtype=F64) if with_bias else None
    est = (alpha_star_matrix(jvp_fn, z, r, t, delta, bias, sample_ndim=3) if with_bias
           else alpha_star_upper_bound(jvp_fn, z, r, t, delta, sample_ndim=3))
    mm, h, d = mat.numpy(), (t - r).numpy(), delta.reshape(b, m_draws, 4).numpy()
    hjd = h[:, None, None] * d @ mm.T
    num = (hjd * (hjd - d)).sum(-1).mean(1).sum()
    den = (hjd ** 2).sum(-1).mean(1).sum()
    if with_bias:
        den += ((h[:, None] * bias.reshape(b, 4).numpy() @ mm.T) ** 2).sum()
    assert float(est.numerator) == pytest.approx(num, rel=1e-10)
    assert float(est.denominator) == pytest.approx(den, rel=1e-10)
    assert float(est.value) == pytest.approx(min(max(num / den, 0.0), 1.0), rel=1e-10)


def test_meanflow_loss_defaults_are_meanflows_adaptive_weight():
    """Without p and eps the weight is MeanFlow's 1 / (||err||^2 + 1e-3) (p = 1), by hand on a linear u = M z."""
    from mfsweep.method.loss import meanflow_loss

    g = torch.Generator().manual_seed(2)
    mat = torch.randn(2, 2, generator=g, dtype=F64)
    z, v = torch.randn(6, 2, generator=g, dtype=F64), torch.randn(6, 2, generator=g, dtype=F64)
    t = torch.rand(6, generator=g, dtype=F64)
    r = 0.5 * t
    terms = meanflow_loss(lambda z_, r_, t_, dz, dr, dt: (z_ @ mat.T, dz @ mat.T), z, r, t, v, v)
    sq = ((z @ mat.T - (v - (t - r)[:, None] * (v @ mat.T))) ** 2).sum(-1)
    torch.testing.assert_close(terms.sq, sq)
    torch.testing.assert_close(terms.weight, 1.0 / (sq + 1e-3))


@pytest.mark.parametrize("kwargs,key", [(dict(n_members=0), "n_members"), (dict(dim=-1), "dim"),
                                        (dict(width=0), "model.width"), (dict(depth=0), "model.depth"),
                                        (dict(width=2.0), "model.width")])
def test_mlp_refuses_non_positive_sizes_by_key(kwargs, key):
    from mfsweep.models.mlp import EnsembleMLP

    args = {**dict(n_members=2, dim=2, width=4, depth=2), **kwargs}
    value = kwargs[next(iter(kwargs))]
    with pytest.raises(ValueError, match=f"^{key} must be a positive integer, got {value!r}$"):
        EnsembleMLP(**args)


def test_mlp_layout_and_forward_against_numpy_per_member():
    """Stacked layers [d + 2 -> width -> ... -> d] (inputs z, t, t - r), SiLU between, member by member in NumPy."""
    from mfsweep.models.mlp import EnsembleMLP

    m = EnsembleMLP(3, 2, width=5, depth=2).double()
    assert (m.n_members, m.dim, m.width, m.depth) == (3, 2, 5, 2)
    assert [tuple(w.shape) for w in m.weights] == [(3, 5, 4), (3, 5, 5), (3, 2, 5)]
    assert [tuple(b.shape) for b in m.biases] == [(3, 1, 5), (3, 1, 5), (3, 1, 2)]
    for i in range(3):
        m.init_member(i, torch.Generator().manual_seed(i))
    g = torch.Generator().manual_seed(9)
    z = torch.randn(3, 4, 2, generator=g, dtype=F64)
    t = torch.rand(3, 4, generator=g, dtype=F64)
    r = t * torch.rand(3, 4, generator=g, dtype=F64)
    with torch.no_grad():
        got = m(z, r, t).numpy()
    silu = lambda a: a / (1 + np.exp(-a))  # noqa: E731
    for e in range(3):
        h = np.concatenate([z[e].numpy(), t[e].numpy()[:, None], (t[e] - r[e]).numpy()[:, None]], 1)
        layers = [(w[e].detach().numpy(), b[e, 0].detach().numpy()) for w, b in zip(m.weights, m.biases)]
        for k, (w, b) in enumerate(layers):
            h = h @ w.T + b
            if k < len(layers) - 1:
                h = silu(h)
        np.testing.assert_allclose(got[e], h, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("n_replicas", [2, 5])
def test_streaming_variance_equals_total_variance_for_any_leading_shape(n_replicas):
    """Welford, replica by replica, equals the batch formula for replicas (..., P) of any leading shape
    (here (E, A, P)), from two replicas on; one replica is refused by message."""
    from mfsweep.method.gradvar import StreamingTotalVariance

    g = torch.randn(n_replicas, 2, 3, 7, generator=torch.Generator().manual_seed(5), dtype=F64)
    acc = StreamingTotalVariance()
    acc.add(g[0])
    with pytest.raises(ValueError, match=r"needs at least 2 replicas, got 1$"):
        acc.value()
    for replica in g[1:]:
        acc.add(replica)
    torch.testing.assert_close(acc.value(), total_variance(g))
    assert acc.value().shape == (2, 3)


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


def test_mlp_defaults_and_the_smallest_valid_sizes():
    from mfsweep.models.mlp import EnsembleMLP

    m = EnsembleMLP(1, 2)
    assert (m.width, m.depth) == (128, 3) and len(m.weights) == 4  # the documented defaults: 3 hidden layers of 128
    tiny = EnsembleMLP(1, 1, width=1, depth=1)  # 1 is a positive integer everywhere
    assert [tuple(w.shape) for w in tiny.weights] == [(1, 1, 3), (1, 1, 1)]


def test_mlp_io_kwargs_rebuild_a_network_with_the_same_inputs_and_outputs():
    """`io_kwargs()` is what a learned velocity head is built from (method/proxy.py): the constructor's own keys,
    so a network of another width and depth beside it takes and returns the same shapes."""
    from mfsweep.models.mlp import EnsembleMLP

    m = EnsembleMLP(3, 5, width=8, depth=2)
    assert m.io_kwargs() == {"n_members": 3, "dim": 5}
    head = EnsembleMLP(**m.io_kwargs(), width=4, depth=1)
    z, t = torch.randn(3, 7, 5), torch.rand(3, 7)
    assert head(z, t, t).shape == m(z, t, t).shape == (3, 7, 5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_streaming_variance_stays_on_the_gradients_device():
    """Gradients on a GPU: the accumulator lives there too (an m2 left on the CPU fails at the second add)."""
    from mfsweep.method.gradvar import StreamingTotalVariance

    g = torch.randn(3, 2, 5, generator=torch.Generator().manual_seed(0), dtype=F64)
    acc = StreamingTotalVariance()
    for replica in g:
        acc.add(replica.cuda())
    assert acc.value().device.type == "cuda"
    torch.testing.assert_close(acc.value().cpu(), total_variance(g))


def test_james_stein_of_numbers_is_a_number():
    from mfsweep.method.theory import james_stein

    value = james_stein(1.0, 0.25)
    assert isinstance(value, float) and value == pytest.approx(0.8)


def test_rademacher_probes_with_one_generator_per_member():
    """Per-member generators: member e's probes are exactly those its own generator draws for one member
    (so a packed member's diagnostics equal its single run's), +-1 valued, shaped like z."""
    from mfsweep.method.theory import _rademacher

    z = torch.zeros(2, 3, 4, dtype=F64)
    probes = _rademacher(z, [torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)])
    assert probes.shape == z.shape and probes.dtype == F64 and set(probes.unique().tolist()) == {-1.0, 1.0}
    for e, seed in enumerate((1, 2)):
        alone = _rademacher(z[e], torch.Generator().manual_seed(seed))
        torch.testing.assert_close(probes[e], alone, rtol=0, atol=0)
        want = torch.randint(0, 2, (3, 4), generator=torch.Generator().manual_seed(seed)).double() * 2 - 1
        torch.testing.assert_close(probes[e], want, rtol=0, atol=0)


def test_theory_tensors_take_the_first_tensors_dtype():
    """Mixed inputs are cast to the first tensor's floating dtype (an integer tensor gives the default dtype)."""
    from mfsweep.method.theory import alpha_star

    out = alpha_star(torch.tensor([3.0], dtype=torch.float32), torch.tensor([1.0], dtype=F64), 0.0)
    assert out.dtype == torch.float32 and out.tolist() == pytest.approx([2 / 3])
    curve = mse_curve(torch.tensor([0]), torch.tensor([3]), 1, 0)
    assert curve.dtype == torch.get_default_dtype() and curve.tolist() == [4.0]


def test_safe_ratio_has_a_finite_gradient_where_the_denominator_vanishes():
    """The double `where` idiom: at c = 0 kappa is 0 and its gradient is finite (0), not NaN."""
    from mfsweep.method.theory import kappa

    c = torch.tensor([0.0, 2.0], dtype=F64, requires_grad=True)
    kappa(c).sum().backward()
    torch.testing.assert_close(c.grad, torch.tensor([0.0, 0.25], dtype=F64))
