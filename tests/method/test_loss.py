"""The MeanFlow loss with tangent mixing (docs/method.md 2-3) against hand computation and finite differences."""
from __future__ import annotations

import functools

import pytest
import torch

from mfsweep.method.jvp import functional_jvp
from mfsweep.method.loss import adaptive_weight, flow_matching_anchor, meanflow_loss, meanflow_target
from mfsweep.method.tangent import boundary_r, mix_tangent
from mfsweep.models.dit import DiT
from mfsweep.models.mlp import EnsembleMLP

E, B, D = 2, 16, 2
F64 = torch.float64


def _model(dtype=torch.float64, width=16, members=E) -> EnsembleMLP:
    m = EnsembleMLP(members, D, width=width).to(dtype)
    for i in range(members):
        m.init_member(i, torch.Generator().manual_seed(10 + i))
    return m


def _batch(dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x, e = torch.randn(E, B, D, generator=g, dtype=dtype), torch.randn(E, B, D, generator=g, dtype=dtype)
    t = torch.rand(E, B, generator=g, dtype=dtype) * 0.9 + 0.05
    r = t * torch.rand(E, B, generator=g, dtype=dtype)
    z = (1 - t[..., None]) * x + t[..., None] * e
    return x, e, t, r, z, e - x


@pytest.mark.parametrize("jvp", ["hand", "functional"])
def test_jvp_equals_central_finite_difference(jvp):
    model = _model()
    _, _, t, r, z, v_c = _batch()
    u_bar = torch.randn_like(v_c)
    v_tan = mix_tangent(v_c, u_bar, 0.3)
    fn = model.jvp if jvp == "hand" else functools.partial(functional_jvp, model)
    u, du = fn(z, r, t, v_tan, torch.zeros_like(r), torch.ones_like(t))
    eps = 1e-6
    with torch.no_grad():
        fd = (model(z + eps * v_tan, r, t + eps) - model(z - eps * v_tan, r, t - eps)) / (2 * eps)
    torch.testing.assert_close(du, fd, rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(u, model(z, r, t))


def test_hand_jvp_matches_torch_func_along_every_direction():
    model = _model()
    _, _, t, r, z, _ = _batch()
    g = torch.Generator().manual_seed(3)
    dz, dr, dt = (torch.randn(s, generator=g, dtype=torch.float64) for s in (z.shape, r.shape, t.shape))
    u1, du1 = model.jvp(z, r, t, dz, dr, dt)
    u2, du2 = functional_jvp(model, z, r, t, dz, dr, dt)
    torch.testing.assert_close(du1, du2)
    torch.testing.assert_close(u1, u2)


def test_loss_value_by_hand():
    """sq = ||u - (v_c - (t - r) du)||^2 with du along (v_tan, 0, 1); w = (sq + eps)^-p."""
    model = _model()
    _, _, t, r, z, v_c = _batch()
    terms = meanflow_loss(model.jvp, z, r, t, v_c, v_c, p=0.5, eps=0.01)
    u, du = functional_jvp(model, z, r, t, v_c, torch.zeros_like(r), torch.ones_like(t))
    sq = ((u - (v_c - (t - r)[..., None] * du)) ** 2).sum(-1)
    torch.testing.assert_close(terms.sq, sq)
    torch.testing.assert_close(terms.weight, (sq + 0.01) ** -0.5)
    torch.testing.assert_close(terms.weighted(), (sq / (sq + 0.01) ** 0.5).mean(-1))
    torch.testing.assert_close(terms.mse(), sq.mean(-1))
    assert adaptive_weight(sq, 0.0, 1e-3).eq(1).all()


def _grads(model, loss):
    model.zero_grad()
    loss.sum().backward()
    return [p.grad.clone() for p in model.parameters()]


def test_alpha_zero_with_ema_proxy_is_exactly_vanilla():
    model = _model()
    _, _, t, r, z, v_c = _batch()
    u_bar = torch.randn_like(v_c)  # any proxy value: alpha = 0 must ignore it
    vanilla = meanflow_loss(model.jvp, z, r, t, v_c, v_c)
    mixed = meanflow_loss(model.jvp, z, r, t, v_c, mix_tangent(v_c, u_bar, torch.zeros(E, 1, 1, dtype=torch.float64)))
    assert torch.equal(vanilla.weighted(), mixed.weighted())
    for a, b in zip(_grads(model, vanilla.weighted()), _grads(model, mixed.weighted())):
        assert torch.equal(a, b)


def test_alpha_one_ignores_v_c_in_tangent_but_not_in_target():
    model = _model()
    _, _, t, r, z, v_c = _batch()
    u_bar = torch.randn_like(v_c)
    noise = torch.randn_like(v_c)
    one = torch.ones(E, 1, 1, dtype=torch.float64)
    base = meanflow_loss(model.jvp, z, r, t, v_c, mix_tangent(v_c, u_bar, one))
    # Perturb v_c only inside the tangent: nothing changes.
    tangent_only = meanflow_loss(model.jvp, z, r, t, v_c, mix_tangent(v_c + noise, u_bar, one))
    torch.testing.assert_close(base.sq, tangent_only.sq, rtol=0, atol=0)
    # Perturb v_c in the target (tangent fixed by the proxy): the loss changes.
    target_too = meanflow_loss(model.jvp, z, r, t, v_c + noise, mix_tangent(v_c + noise, u_bar, one))
    assert not torch.allclose(base.sq, target_too.sq)


def test_mix_tangent_is_the_convex_combination():
    v_c, u_bar = torch.tensor([1.0, -2.0]), torch.tensor([3.0, 4.0])
    torch.testing.assert_close(mix_tangent(v_c, u_bar, 0.25), 0.75 * v_c + 0.25 * u_bar)
    assert mix_tangent(v_c, None, 0.0) is v_c


def test_gradient_flows_through_the_prediction_only():
    """d/dtheta of w * ||u - sg(u_tgt)||^2 equals d/dtheta of w * ||u - C||^2 with C a constant tensor."""
    model = _model()
    _, _, t, r, z, v_c = _batch()
    terms = meanflow_loss(model.jvp, z, r, t, v_c, v_c, p=1.0)
    g_loss = _grads(model, terms.weighted())
    with torch.no_grad():
        _, du = functional_jvp(model, z, r, t, v_c, torch.zeros_like(r), torch.ones_like(t))
        const = v_c - (t - r)[..., None] * du
        w = terms.weight.clone()
    u = model(z, r, t)
    g_ref = _grads(model, (w * ((u - const) ** 2).sum(-1)).mean(-1))
    for a, b in zip(g_loss, g_ref):
        torch.testing.assert_close(a, b)


def test_du_carries_no_graph_and_target_is_detached():
    model = _model(torch.float32)
    _, _, t, r, z, v_c = _batch(torch.float32)
    _, du = model.jvp(z, r, t, v_c, torch.zeros_like(r), torch.ones_like(t))
    assert not du.requires_grad


def test_anchor_by_hand_and_boundary_clamp():
    model = _model()
    _, _, t, _, z, v_c = _batch()
    got = flow_matching_anchor(model, z, t, v_c, offset=0.1)
    want = ((model(z, (t - 0.1).clamp_min(0), t) - v_c) ** 2).sum(-1)
    torch.testing.assert_close(got, want)
    assert boundary_r(torch.tensor([0.05, 0.5]), 0.1).tolist() == pytest.approx([0.0, 0.4])


def test_members_are_independent():
    """Member 1's loss and gradients do not change when member 0's inputs or weights change."""
    model = _model()
    _, _, t, r, z, v_c = _batch()
    base = meanflow_loss(model.jvp, z, r, t, v_c, v_c)
    g = _grads(model, base.weighted())
    with torch.no_grad():
        for w in model.weights:
            w[0].mul_(3.0)
    z2 = z.clone()
    z2[0] += 1.0
    other = meanflow_loss(model.jvp, z2, r, t, v_c, v_c)
    torch.testing.assert_close(base.sq[1], other.sq[1])
    for a, b in zip(g, _grads(model, other.weighted())):
        torch.testing.assert_close(a[1], b[1])


# --- written against mutants and bugs that once survived the suite (docs/testing.md, "Where the mutant tests live") ---


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


def test_meanflow_target_cuts_a_graph_that_du_carries():
    """`du` from `torch.func.jvp` carries a graph; the target must not pass it on, and its value is
    `v_c - h du` by hand."""
    theta = torch.tensor([2.0], requires_grad=True)
    du = theta * torch.tensor([1.0, -3.0])
    v_c, h = torch.tensor([0.5, 0.25]), torch.tensor([0.5])
    target = meanflow_target(v_c, h, du)
    assert du.requires_grad and not target.requires_grad
    torch.testing.assert_close(target, torch.tensor([0.5 - 0.5 * 2.0, 0.25 + 0.5 * 6.0]))


def _mlp() -> EnsembleMLP:
    m = EnsembleMLP(2, 2, width=16).double()
    for i in range(2):
        m.init_member(i, torch.Generator().manual_seed(20 + i))
    return m


def _mlp_batch():
    g = torch.Generator().manual_seed(4)
    x, e = torch.randn(2, 8, 2, generator=g, dtype=torch.float64), torch.randn(2, 8, 2, generator=g, dtype=torch.float64)
    t = torch.rand(2, 8, generator=g, dtype=torch.float64) * 0.8 + 0.1
    r = t * torch.rand(2, 8, generator=g, dtype=torch.float64)
    return (1 - t[..., None]) * x + t[..., None] * e, r, t, e - x


def _tiny_dit() -> DiT:
    model = DiT(input_size=4, patch_size=2, in_channels=2, hidden_size=16, depth=1, num_heads=2, num_classes=3).double()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # lift adaLN-Zero so that u and du depend on every parameter
        for name, p in model.named_parameters():
            if "adaLN_modulation" in name or name.startswith("final_layer.linear"):
                p.copy_(0.2 * torch.randn(p.shape, generator=g, dtype=torch.float64))
    return model


def _dit_batch():
    g = torch.Generator().manual_seed(2)
    z = torch.randn(3, 2, 4, 4, generator=g, dtype=torch.float64)
    a, b = torch.rand(3, generator=g, dtype=torch.float64), torch.rand(3, generator=g, dtype=torch.float64)
    return z, torch.minimum(a, b), torch.maximum(a, b) * 0.8 + 0.2, torch.randn(3, 2, 4, 4, generator=g, dtype=torch.float64)


def _case(path: str):
    """(model, u_fn, jvp_fn, z, r, t, v_c, sample_ndim) for one JVP path."""
    if path == "dit":
        model = _tiny_dit()
        y = torch.tensor([0, 1, 3])  # 3 is the null class
        z, r, t, v_c = _dit_batch()
        u_fn = lambda z_, r_, t_: model(z_, r_, t_, y)  # noqa: E731
        jvp_fn = lambda *a: model.jvp(*a, y)  # noqa: E731
        return model, u_fn, jvp_fn, z, r, t, v_c, 3
    model = _mlp()
    z, r, t, v_c = _mlp_batch()
    jvp_fn = model.jvp if path == "hand" else functools.partial(functional_jvp, model)
    return model, model, jvp_fn, z, r, t, v_c, 1


@pytest.mark.parametrize("path", ["hand", "functional", "dit"])
def test_loss_gradient_flows_through_the_prediction_only_on_every_jvp_path(path):
    """d/dtheta of the MeanFlow loss equals d/dtheta of w ||u_theta - C||^2 with C = v_c - (t - r) du built
    from a central finite difference of the model under no_grad: an independent target that no graph can
    reach. On the DiT and functional paths `du` carries a graph, so a target without `.detach()` changes the
    gradients (by ~1e-2 on the DiT)."""
    model, u_fn, jvp_fn, z, r, t, v_c, nd = _case(path)
    _, du_check = jvp_fn(z, r, t, v_c, torch.zeros_like(r), torch.ones_like(t))
    if path != "hand":
        assert du_check.requires_grad  # the path under test really hands the loss a du with a graph
    terms = meanflow_loss(jvp_fn, z, r, t, v_c, v_c, p=1.0, eps=1e-3, sample_ndim=nd)
    model.zero_grad()
    terms.weighted().sum().backward()
    got = [p.grad.clone() for p in model.parameters()]

    eps = 1e-6
    h = (t - r).reshape(t.shape + (1,) * nd)
    with torch.no_grad():
        du = (u_fn(z + eps * v_c, r, t + eps) - u_fn(z - eps * v_c, r, t - eps)) / (2 * eps)
        const = v_c - h * du
    model.zero_grad()
    sq = (u_fn(z, r, t) - const).pow(2).flatten(start_dim=t.dim()).sum(-1)
    w = 1.0 / (sq.detach() + 1e-3)
    (w * sq).mean(-1).sum().backward()
    for (name, p), g in zip(model.named_parameters(), got):
        torch.testing.assert_close(g, p.grad, rtol=1e-5, atol=1e-8, msg=lambda m: f"{name}: {m}")
