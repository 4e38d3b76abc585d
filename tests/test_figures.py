"""The paper's figures (docs/method.md 5): Figure 1's tr(A Sigma A^T) and Figure 4's loss variance against hand
formulas (linear models, the exact flow of a single Gaussian), and the figure builders on real inputs."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import TINY, compose_cfg
from matplotlib.figure import Figure

from mfsweep.tasks import build_task
from mfsweep.data.gmm import GaussianMixture, three_mode_mixture
from mfsweep.figures import (
    figure_loss_variance,
    figure_trace_maps,
    jacobi_factor,
    jacobi_trace_map,
    loss_variance_by_h,
    loss_variance_for_task,
    member_u_fn,
    times_by_h,
)

F64 = torch.float64


def test_trace_map_of_a_linear_model_is_the_hand_formula():
    """u = M z + (t - r): J = M everywhere, so the map is tr((I - hM) Sigma(z, t) (I - hM)^T) with the exact Sigma."""
    m = torch.tensor([[1.5, -0.7], [0.4, 2.0]], dtype=F64)
    mixture, r, t = three_mode_mixture(), 0.2, 0.75
    tm = jacobi_trace_map(mixture, r, t, u_fn=lambda z, r, t: z @ m.T + (t - r)[:, None], extent=2.0, n=5)
    assert tm.values.shape == (5, 5) and tm.jacobian == "model"
    a = np.eye(2) - (t - r) * m.numpy()
    for i, y in enumerate(tm.ys):
        for j, x in enumerate(tm.xs):
            sigma = mixture.conditional_covariance(torch.tensor([[x, y]], dtype=F64), t)[0].numpy()
            assert tm.values[i, j] == pytest.approx(np.trace(a @ sigma @ a.T), rel=1e-10)
    torch.testing.assert_close(torch.from_numpy(tm.centres), (1 - t) * mixture.means)


@pytest.mark.parametrize("r, t", [(0.1, 0.6), (0.5, 0.9), (0.0, 1.0)])
def test_exact_mean_velocity_of_one_gaussian_gives_the_flow_map_scaling(r, t):
    """One component N(m, s^2 I): z_t ~ N((1 - t) m, tau_t^2 I), the flow scales by tau_r / tau_t, so
    A = dz_r/dz_t = tau_r / tau_t I and, with Sigma = s^2 / tau_t^2 I, tr(A Sigma A^T) = 2 tau_r^2 s^2 / tau_t^4."""
    s = 0.3
    one = GaussianMixture.from_means(torch.tensor([[0.8, -0.4]], dtype=F64), scale=s)
    tau2 = lambda u: (1 - u) ** 2 * s**2 + u**2  # noqa: E731
    z = torch.tensor([[0.3, 0.1], [-1.0, 2.0]], dtype=F64)
    a = jacobi_factor(one, z, r, t, ode_steps=40)                   # RK4: relative error < 1e-7 here
    torch.testing.assert_close(a, (tau2(r) / tau2(t)) ** 0.5 * torch.eye(2, dtype=F64).expand(2, 2, 2), rtol=2e-7, atol=1e-12)
    tm = jacobi_trace_map(one, r, t, extent=1.0, n=2, ode_steps=40)
    np.testing.assert_allclose(tm.values, 2 * tau2(r) * s**2 / tau2(t) ** 2, rtol=4e-7)
    assert tm.jacobian == "exact mean velocity"


def test_three_mode_map_and_figure():
    maps = [jacobi_trace_map(r=0.4, t=0.5, n=21, ode_steps=10), jacobi_trace_map(r=0.4, t=0.5, n=21,
                                                                             u_fn=lambda z, r, t: 0 * z)]
    assert all(np.isfinite(m.values).all() and (m.values > 0).all() for m in maps)
    # J = 0 leaves tr(Sigma); the exact flow's A changes it
    sigma_trace = three_mode_mixture().conditional_covariance(torch.zeros(1, 2, dtype=F64), 0.5)[0].trace()
    assert maps[1].values[10, 10] == pytest.approx(float(sigma_trace), rel=1e-10)
    assert not np.allclose(maps[0].values, maps[1].values)
    fig = figure_trace_maps(maps)
    assert isinstance(fig, Figure) and len(fig.axes) == 3                      # two panels and a colour bar
    with pytest.raises(ValueError, match="^need 0 <= r <= t <= 1"):
        jacobi_trace_map(r=0.6, t=0.5)


def test_loss_variance_of_a_linear_model_is_the_hand_formula():
    """u = M z (time-free), proxy W z: the per-sample losses are ||Mz - (I - hM) v_c||^2 (tangent v_c) and
    ||Mz - v_c + h M W z||^2 (tangent W z); their per-bin sample variances by NumPy."""
    g = torch.Generator().manual_seed(0)
    m = torch.tensor([[2.0, 0.5], [-0.3, 1.2]], dtype=F64)
    w = torch.tensor([[-1.0, 0.2], [0.1, -0.8]], dtype=F64)
    edges = (0.0, 0.25, 0.5, 1.0)
    t, r = times_by_h(edges, 40, g)
    t, r = t.double(), r.double()
    assert bool(((t - r) >= 0).all() and (t <= 1).all() and (r >= 0).all())
    x, e = torch.randn(2, 120, 2, generator=g, dtype=F64)
    lv = loss_variance_by_h(lambda z, r, t, dz, dr, dt: (z @ m.T, dz @ m.T), lambda z, t: z @ w.T, x, e, t, r, edges)
    assert lv.count.tolist() == [40, 40, 40]
    z, v_c, h = ((1 - t[:, None]) * x + t[:, None] * e).numpy(), (e - x).numpy(), (t - r).numpy()[:, None]
    mm, ww = m.numpy(), w.numpy()
    stoch = ((z @ mm.T - v_c + h * v_c @ mm.T) ** 2).sum(-1)
    det = ((z @ mm.T - v_c + h * (z @ ww.T) @ mm.T) ** 2).sum(-1)
    for b in range(3):
        sel = slice(40 * b, 40 * (b + 1))                          # times_by_h fills the bins in order
        assert lv.stochastic[b] == pytest.approx(stoch[sel].var(ddof=1), rel=1e-10)
        assert lv.deterministic[b] == pytest.approx(det[sel].var(ddof=1), rel=1e-10)


def test_loss_variance_and_trace_map_of_a_trained_task():
    cfg = compose_cfg(*TINY, "dataset=dgmm", "dataset.dim=2", "dataset.n_components=3", "tangent=oracle")
    task = build_task(cfg, [0.0, 1.0], [0, 1])
    lv = loss_variance_for_task(task, n_per_bin=50, edges=(0.0, 0.5, 1.0))
    assert lv.stochastic.shape == lv.deterministic.shape == (2, 2) and (lv.count == 50).all()
    assert np.isfinite(lv.stochastic).all() and np.isfinite(lv.deterministic).all()
    assert isinstance(figure_loss_variance(lv, member=1, title="dgmm"), Figure)
    tm = jacobi_trace_map(task.dataset, 0.2, 0.6, u_fn=member_u_fn(task.model, 1), n=7)
    assert tm.values.shape == (7, 7) and np.isfinite(tm.values).all()


def test_loss_variance_trace_map_and_figure_of_a_task_against_independent_recomputation():
    """The task-level quantities against a recomputation that shares none of their code: per-sample losses
    with du from a central finite difference of a float64 copy of the network, variances by NumPy; the trace
    map from a finite-difference Jacobian at each grid point; the figure's lines against `lv` itself."""
    import copy

    cfg = compose_cfg(*TINY, "dataset=dgmm", "dataset.dim=2", "dataset.n_components=3", "tangent=oracle")
    task = build_task(cfg, [0.0, 1.0], [0, 1])
    edges, n = (0.0, 0.5, 1.0), 50
    lv = loss_variance_for_task(task, n_per_bin=n, edges=edges, seed=3)

    g = torch.Generator().manual_seed(3)  # the draws loss_variance_for_task documents, in its order
    t, r = times_by_h(edges, n, g)
    x = task.dataset.sample(t.shape[0], g)
    e = torch.randn(x.shape, generator=g)
    net = copy.deepcopy(task.model).double()
    big = lambda a: a.double().expand(2, *a.shape)  # noqa: E731
    x, e, t, r = big(x), big(e), big(t), big(r)
    z, v_c, h = (1 - t[..., None]) * x + t[..., None] * e, e - x, (t - r)[..., None]
    eps = 1e-6
    for tangent, got in ((v_c, lv.stochastic), (task.proxy.marginal_velocity(z.float(), t.float()).double(), lv.deterministic)):
        with torch.no_grad():
            du = (net(z + eps * tangent, r, t + eps) - net(z - eps * tangent, r, t - eps)) / (2 * eps)
            sq = ((net(z, r, t) - (v_c - h * du)) ** 2).sum(-1).numpy()
        want = np.stack([[sq[m, b * n:(b + 1) * n].var(ddof=1) for b in range(2)] for m in range(2)])
        np.testing.assert_allclose(got, want, rtol=1e-3)

    fig = figure_loss_variance(lv, member=1, title="dgmm")
    lines = fig.axes[0].get_lines()
    np.testing.assert_allclose(lines[0].get_xdata(), [0.25, 0.75])
    np.testing.assert_allclose(lines[0].get_ydata(), lv.stochastic[1])
    np.testing.assert_allclose(lines[1].get_ydata(), lv.deterministic[1])

    tm = jacobi_trace_map(task.dataset, 0.2, 0.6, u_fn=member_u_fn(task.model, 1), n=5)
    xs = np.linspace(-3, 3, 5)
    for i, j in ((0, 0), (1, 3), (2, 2), (4, 1)):
        p = torch.tensor([[xs[j], xs[i]]], dtype=F64)  # row i is y, column j is x
        f = lambda q: net(q.expand(2, 1, 2), torch.full((2, 1), 0.2, dtype=F64), torch.full((2, 1), 0.6, dtype=F64))[1, 0]  # noqa: E731
        with torch.no_grad():
            jac = torch.stack([(f(p + eps * d) - f(p - eps * d)) / (2 * eps) for d in torch.eye(2, dtype=F64)], 1)
        a = (torch.eye(2, dtype=F64) - 0.4 * jac).numpy()
        sigma = task.dataset.conditional_covariance(p, 0.6)[0].double().numpy()
        assert tm.values[i, j] == pytest.approx(np.trace(a @ sigma @ a.T), rel=1e-4)
