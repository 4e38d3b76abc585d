"""The paper's figures as functions a notebook can call and the report can embed (docs/method.md 5).

- Figure 1: the map of `tr(A Sigma A^T)`, `A = I - (t - r) J`, over a 2-D grid at fixed (r, t), with the
  exact `Sigma(z, t) = Cov[v_c | z_t = z]` of a Gaussian mixture (default: `three_mode_mixture()`). This is
  the variance term `E||(hJ - I) delta||^2` that vanilla MeanFlow's per-sample error carries (docs/method.md 4).
- Figure 4 (left): per-sample loss variance against t - r on one checkpoint, with the stochastic tangent v_c
  and with a deterministic proxy u_bar.

The computations (`jacobi_trace_map`, `loss_variance_by_h`) return arrays; the `figure_*` functions only
draw them and return a matplotlib `Figure` (not pyplot's: nothing keeps it alive once dropped).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

from mfsweep.data.gmm import GaussianMixture, three_mode_mixture
from mfsweep.method.jvp import JvpFn
from mfsweep.method.loss import meanflow_loss
from mfsweep.method.tangent import boundary_r

UFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
DEFAULT_H_EDGES = (0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


# --- Figure 1 ---------------------------------------------------------------------------------------

@dataclass
class TraceMap:
    """`values[i, j] = tr(A Sigma A^T)` at `z = (xs[j], ys[i])` taken as z_t, for the given (r, t); `jacobian`
    says whose J made A (`"model"` or `"exact mean velocity"`); `centres` are the modes at time t, `(1 - t) m_k`."""

    xs: np.ndarray
    ys: np.ndarray
    values: np.ndarray
    r: float
    t: float
    jacobian: str
    centres: np.ndarray


def flow_map(mixture: GaussianMixture, z: torch.Tensor, t: float, r: float, steps: int) -> torch.Tensor:
    """`z_r`: the marginal-velocity ODE `dz/ds = v(z, s)` integrated from `z` at s = t down to s = r with
    `steps` RK4 steps (the exact v of the mixture, docs/method.md 3)."""
    ds = (r - t) / steps
    s = t
    for _ in range(steps):
        k1 = mixture.marginal_velocity(z, s)
        k2 = mixture.marginal_velocity(z + 0.5 * ds * k1, s + 0.5 * ds)
        k3 = mixture.marginal_velocity(z + 0.5 * ds * k2, s + 0.5 * ds)
        k4 = mixture.marginal_velocity(z + ds * k3, s + ds)
        z = z + ds / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        s += ds
    return z


def _pointwise_jacobian(fn: Callable[[torch.Tensor], torch.Tensor], z: torch.Tensor) -> torch.Tensor:
    """The per-point Jacobian `(N, d, d)` of a pointwise map `fn` at `z` `(N, d)`: row k is the gradient of
    `sum_n fn(z)[n, k]` (points do not interact), one backward pass per output coordinate (reverse mode: through
    the ODE solver it is far cheaper than torch.func's forward mode)."""
    with torch.enable_grad():
        z = z.detach().requires_grad_(True)
        out = fn(z)
        d = out.shape[-1]
        rows = [torch.autograd.grad(out[:, k].sum(), z, retain_graph=k < d - 1)[0] for k in range(d)]
    return torch.stack(rows, -2)


def jacobi_factor(mixture: GaussianMixture, z: torch.Tensor, r: float, t: float, *, u_fn: UFn | None = None,
                  ode_steps: int = 100) -> torch.Tensor:
    """`A = I - (t - r) J` at every `z` `(N, d)`, `(N, d, d)`.

    With `u_fn(z, r, t)` (a model, z `(N, d)`, times `(N,)`), J is its spatial Jacobian. Without, J is the
    Jacobian of the exact mean velocity `u(z_t, r, t) = (z_t - z_r) / (t - r)` along the mixture's flow, and
    then `A = dz_r / dz_t` exactly: the Jacobian of the flow map (by AD through `flow_map`).
    As r -> t both tend to `I - h dv/dz`.
    """
    h = t - r
    if u_fn is None:
        if h == 0:
            return torch.eye(z.shape[-1], dtype=z.dtype).expand(z.shape[0], -1, -1)
        return _pointwise_jacobian(lambda x: flow_map(mixture, x, t, r, ode_steps), z)
    rr, tt = torch.full(z.shape[:1], r, dtype=z.dtype), torch.full(z.shape[:1], t, dtype=z.dtype)
    jac = _pointwise_jacobian(lambda x: u_fn(x, rr, tt), z)
    return torch.eye(z.shape[-1], dtype=z.dtype) - h * jac


def jacobi_trace_map(mixture: GaussianMixture | None = None, r: float = 0.3, t: float = 0.7, *,
                     u_fn: UFn | None = None, extent: float = 3.0, n: int = 81, ode_steps: int = 100) -> TraceMap:
    """Figure 1's `tr(A Sigma(z, t) A^T)` over the `n x n` grid `[-extent, extent]^2` (docs/method.md 4-5); see
    `jacobi_factor` for A (model or exact mean velocity). Sigma is exact for the mixture. 2-D mixtures only."""
    mixture = three_mode_mixture() if mixture is None else mixture
    if mixture.dim != 2:
        raise ValueError(f"mixture must be 2-D for a map, got dim {mixture.dim}")
    if not 0 <= r <= t <= 1:
        raise ValueError(f"need 0 <= r <= t <= 1, got r={r}, t={t}")
    xs = torch.linspace(-extent, extent, n, dtype=torch.float64)
    gy, gx = torch.meshgrid(xs, xs, indexing="ij")
    z = torch.stack([gx.reshape(-1), gy.reshape(-1)], -1)
    a = jacobi_factor(mixture, z, r, t, u_fn=u_fn, ode_steps=ode_steps).double()
    sigma = mixture.conditional_covariance(z, t)
    values = torch.einsum("nij,njk,nik->n", a, sigma, a).reshape(n, n).detach()
    return TraceMap(xs.numpy(), xs.numpy(), values.numpy(), r, t, "exact mean velocity" if u_fn is None else "model",
                    ((1 - t) * mixture.means).numpy())


def member_u_fn(model: torch.nn.Module, member: int) -> UFn:
    """`u(z, r, t)` of one member of a stacked `EnsembleMLP` (e.g. a trained task's `model` or `ema`), for
    unstacked inputs z `(N, d)` and times `(N,)` in any float dtype (the network runs in its own)."""
    def u(z: torch.Tensor, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        e, dtype = model.n_members, next(model.parameters()).dtype
        stack = lambda a: a.to(dtype).expand(e, *a.shape)  # noqa: E731
        return model(stack(z), stack(r), stack(t))[member].to(z.dtype)
    return u


def figure_trace_maps(maps: Sequence[TraceMap], top_percentile: float = 99.5) -> Figure:
    """Figure 1: one panel per map, `tr(A Sigma A^T)` on one shared log colour scale, modes at time t marked.

    With the exact mean velocity, points on a separatrix between modes (where the flow splits mass) have
    exponentially large flow-map Jacobians at small t, so the scale stops at the `top_percentile` of all
    values (the colour bar's arrow) to keep the rest readable."""
    fig = Figure(figsize=(3.2 * len(maps) + 0.8, 3.2), layout="constrained")
    axes = fig.subplots(1, len(maps), squeeze=False)[0]
    positive = np.concatenate([m.values[m.values > 0] for m in maps])
    norm = LogNorm(positive.min(), np.percentile(positive, top_percentile)) if positive.size else None
    for ax, m in zip(axes, maps):
        mesh = ax.pcolormesh(m.xs, m.ys, m.values, norm=norm, cmap="magma", shading="auto", rasterized=True)
        ax.scatter(m.centres[:, 0], m.centres[:, 1], s=12, c="cyan", marker="x")
        ax.set_title(f"r = {m.r:g}, t = {m.t:g}", fontsize=9)
        ax.set_aspect("equal")
    fig.colorbar(mesh, ax=list(axes), extend="max", label=r"tr$(A\Sigma A^\top)$, $A = I - (t-r)J$")
    return fig


# --- Figure 4 (left) --------------------------------------------------------------------------------

@dataclass
class LossVariance:
    """Per-sample loss variance per bin of h = t - r: `stochastic` (tangent v_c) and `deterministic` (tangent
    u_bar), `(..., n_bins)` (leading dims: ensemble members), over `count` `(..., n_bins)` samples per bin."""

    edges: np.ndarray
    stochastic: np.ndarray
    deterministic: np.ndarray
    count: np.ndarray

    @property
    def centres(self) -> np.ndarray:
        return 0.5 * (self.edges[1:] + self.edges[:-1])


def times_by_h(edges: Sequence[float], n_per_bin: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """`n_per_bin` pairs per bin of h: `h ~ U[lo, hi)`, `t ~ U[h, 1]`, `r = t - h` (so every bin is equally
    populated, unlike MeanFlow's training times, which rarely reach large h). Returns `(t, r)`, bin by bin."""
    hs = [lo + (hi - lo) * torch.rand(n_per_bin, generator=generator) for lo, hi in zip(edges[:-1], edges[1:])]
    h = torch.cat(hs)
    t = h + (1 - h) * torch.rand(h.shape, generator=generator)
    return t, t - h


@torch.no_grad()
def loss_variance_by_h(jvp_fn: JvpFn, proxy_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                       x: torch.Tensor, e: torch.Tensor, t: torch.Tensor, r: torch.Tensor,
                       edges: Sequence[float]) -> LossVariance:
    """Variance over samples, per bin of h, of the per-sample MeanFlow loss `||u_theta - sg(u_tgt)||^2`
    (unweighted) with the tangent v_c (vanilla, alpha = 0) and with the proxy `proxy_fn(z_t, t)` (alpha = 1),
    on the same samples (docs/method.md 5, the paper's Figure 4 left). Batches `x`, `e` `(..., B, d)`, times
    `(..., B)`; the sample variance (ddof 1) of each bin `[lo, hi)`, NaN for a bin with fewer than 2 samples.
    """
    z = (1 - t[..., None]) * x + t[..., None] * e
    v_c = e - x
    u_bar = proxy_fn(z, t)
    losses = [meanflow_loss(jvp_fn, z, r, t, v_c, tangent, p=0.0).sq for tangent in (v_c, u_bar)]
    index = np.digitize((t - r).cpu().double().numpy(), np.asarray(edges)[1:-1])
    masks = np.stack([index == b for b in range(len(edges) - 1)], -1)                  # (..., B, n_bins)
    count = masks.sum(-2)
    out = []
    for sq in losses:
        sq = sq.cpu().double().numpy()[..., None]
        mean = (sq * masks).sum(-2) / np.maximum(count, 1)
        var = (((sq - mean[..., None, :]) ** 2) * masks).sum(-2) / np.maximum(count - 1, 1)
        out.append(np.where(count > 1, var, np.nan))
    return LossVariance(np.asarray(edges, dtype=float), out[0], out[1], count)


def task_proxy(task: Any) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The deterministic proxy of a trained vector task through its `Proxy`: `u_bar(z_t, t)` (the oracle, the
    proxy EMA or the live network at (z, t - D, t), a velocity head), or the evaluation EMA at (z, t - D, t)
    for a conditional-tangent cell (docs/method.md 3)."""
    offset = task.loss_cfg.offset

    def u_bar(z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        proxy = task.proxy.velocity(task.model, z, t, offset=offset)
        return proxy if proxy is not None else task.ema(z, boundary_r(t, offset), t)

    return u_bar


def loss_variance_for_task(task: Any, *, n_per_bin: int = 2000, edges: Sequence[float] = DEFAULT_H_EDGES,
                           seed: int = 0) -> LossVariance:
    """`loss_variance_by_h` for every member of a trained vector task (`VectorTask`, e.g. loaded from a
    checkpoint), on one set of data, noise and times drawn from `torch.Generator().manual_seed(seed)`."""
    g = torch.Generator().manual_seed(seed)
    t, r = times_by_h(edges, n_per_bin, g)
    x = task.dataset.sample(t.shape[0], g)
    e = torch.randn(x.shape, generator=g)
    members = task.n_members
    expand = lambda a: a.expand(members, *a.shape).to(task.device)  # noqa: E731
    return loss_variance_by_h(task.model.jvp, task_proxy(task), expand(x), expand(e), expand(t), expand(r), edges)


def figure_loss_variance(lv: LossVariance, member: int = 0, title: str = "") -> Figure:
    """Figure 4 (left): per-sample loss variance against t - r, stochastic tangent v_c vs deterministic proxy."""
    fig = Figure(figsize=(4.2, 3.2), layout="constrained")
    ax = fig.subplots()
    pick = lambda a: a[member] if a.ndim > 1 else a  # noqa: E731
    ax.plot(lv.centres, pick(lv.stochastic), "o-", label=r"stochastic tangent $v_c$")
    ax.plot(lv.centres, pick(lv.deterministic), "s-", label=r"deterministic tangent $\bar u$")
    ax.set_yscale("log")
    ax.set_xlabel("t - r")
    ax.set_ylabel("per-sample loss variance")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    return fig
