"""Tests written to kill mutants that once survived the suite (issue 15; docs/testing.md lists them).

- the target's stop-gradient, on every JVP path (the MLP's hand-written JVP, `functional_jvp`, the DiT's);
- per-member gradient clipping against `torch.nn.utils.clip_grad_norm_` on each member alone;
- pinwheel and two_spirals against FFJORD's own generators, written out here in NumPy.
"""
from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

from mfsweep.data.toy import ToyDataset
from mfsweep.method.jvp import functional_jvp
from mfsweep.method.loss import meanflow_loss, meanflow_target
from mfsweep.models.dit import DiT
from mfsweep.models.mlp import EnsembleMLP
from mfsweep.tasks.optim import clip_grad_norm_per_member

# --------------------------------------------------------------------------------------------------------------
# The target's stop-gradient on every JVP path
# --------------------------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------------------------
# Per-member gradient clipping
# --------------------------------------------------------------------------------------------------------------


def _stacked_grads(norms: list[float]) -> list[torch.nn.Parameter]:
    """Two stacked parameters (E, 3, 2) and (E, 1, 4) whose member-e gradient has total norm norms[e]."""
    g = torch.Generator().manual_seed(0)
    params = [torch.nn.Parameter(torch.zeros(len(norms), 3, 2)), torch.nn.Parameter(torch.zeros(len(norms), 1, 4))]
    raw = [torch.randn(p.shape, generator=g) for p in params]
    total = sum(r.reshape(len(norms), -1).pow(2).sum(1) for r in raw).sqrt()
    for p, r in zip(params, raw):
        p.grad = r * (torch.tensor(norms) / total).view(-1, 1, 1)
    return params


def test_clip_grad_norm_per_member_equals_torch_clip_on_each_member_alone():
    params = _stacked_grads([3.0, 0.5])
    expected, expected_norms = [], []
    for e in range(2):  # torch's own clipping, member by member, on copies
        alone = [torch.nn.Parameter(p.detach()[e].clone()) for p in params]
        for a, p in zip(alone, params):
            a.grad = p.grad[e].clone()
        expected_norms.append(torch.nn.utils.clip_grad_norm_(alone, max_norm=1.0))
        expected.append([a.grad for a in alone])
    norms = clip_grad_norm_per_member(params, torch.tensor([1.0, 1.0]))
    torch.testing.assert_close(norms, torch.stack(expected_norms))
    torch.testing.assert_close(norms, torch.tensor([3.0, 0.5]))
    for e in range(2):
        for p, want in zip(params, expected[e]):
            torch.testing.assert_close(p.grad[e], want)
    # by hand: member 0 now has norm 1 (clipped), member 1 is untouched at 0.5
    after = sum(p.grad.reshape(2, -1).pow(2).sum(1) for p in params).sqrt()
    torch.testing.assert_close(after, torch.tensor([1.0, 0.5]), rtol=1e-5, atol=1e-6)


def test_clip_grad_norm_per_member_max_norms_differ_and_zero_turns_clipping_off():
    params = _stacked_grads([3.0, 3.0])
    before = [p.grad.clone() for p in params]
    clip_grad_norm_per_member(params, torch.tensor([0.0, 2.0]))
    for p, b in zip(params, before):
        torch.testing.assert_close(p.grad[0], b[0])  # max norm 0: member 0 untouched
        torch.testing.assert_close(p.grad[1], b[1] * (2.0 / (3.0 + 1e-6)))  # scaled to norm 2


def test_clip_grad_norm_unstacked_is_torch_clip():
    params = _stacked_grads([3.0])
    ref = [torch.nn.Parameter(p.detach().clone()) for p in params]
    for a, p in zip(ref, params):
        a.grad = p.grad.clone()
    want = torch.nn.utils.clip_grad_norm_(ref, 1.0)
    got = clip_grad_norm_per_member(params, torch.tensor([1.0]))  # one member: any parameter layout
    torch.testing.assert_close(got, want.reshape(1))
    for p, a in zip(params, ref):
        torch.testing.assert_close(p.grad, a.grad)


# --------------------------------------------------------------------------------------------------------------
# pinwheel and two_spirals against FFJORD's generators (lib/toy_data.py, Grathwohl et al. 2019)
# --------------------------------------------------------------------------------------------------------------


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
