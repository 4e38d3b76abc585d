"""The comparator for the packed step: a plain `torch.func.vmap` + `torch.func.jvp` ensemble of the same MLP.

What someone would write without mfsweep's engine: one `nn.Module`-free MLP function, `torch.func.jvp` for the
MeanFlow target, `vmap` over the members' stacked parameters, autograd for the gradient, then the same per-member
work as the packed step: clipping, AdamW (torch's foreach implementation on the stacked tensors), the evaluation
and proxy EMAs. Same settings: EMA tangent, uniform (t, r) with `ratio` of r != t, flow-matching anchor.
"""
from __future__ import annotations

import torch
from torch.func import functional_call, jvp, stack_module_state, vmap


def mlp(dim: int, width: int, depth: int) -> torch.nn.Module:
    sizes = [dim + 2] + [width] * depth
    layers: list[torch.nn.Module] = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        layers += [torch.nn.Linear(n_in, n_out), torch.nn.SiLU()]
    return torch.nn.Sequential(*layers, torch.nn.Linear(width, dim))


class VmapEnsemble:
    """`members` MLPs trained with the MeanFlow loss (alpha per member), written the plain torch.func way."""

    def __init__(self, members: int, dim: int = 2, width: int = 128, depth: int = 3, batch: int = 256,
                 ratio: float = 0.75, anchor: float = 0.1, offset: float = 0.02, lr: float = 1e-3, seed: int = 0):
        torch.manual_seed(seed)
        models = [mlp(dim, width, depth) for _ in range(members)]
        self.base = mlp(dim, width, depth).to("meta")
        params, _ = stack_module_state(models)
        self.params = {k: v.detach().requires_grad_() for k, v in params.items()}
        self.ema = {k: v.detach().clone() for k, v in params.items()}
        self.proxy = {k: v.detach().clone() for k, v in params.items()}
        self.opt = torch.optim.AdamW(list(self.params.values()), lr=lr, foreach=True)
        self.alpha = torch.linspace(0, 1, members).view(-1, 1, 1)
        self.members, self.dim, self.batch, self.ratio, self.anchor, self.offset = members, dim, batch, ratio, anchor, offset

    def u(self, params: dict, z: torch.Tensor, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return functional_call(self.base, params, (torch.cat([z, t[:, None], (t - r)[:, None]], -1),))

    def member_loss(self, params, proxy, alpha, x, e, t, r):
        z = (1 - t[:, None]) * x + t[:, None] * e
        v_c = e - x
        r_near = (t - self.offset).clamp_min(0)
        u_bar = self.u(proxy, z, r_near, t)
        v_tan = v_c + alpha * (u_bar - v_c)
        u, du = jvp(lambda z_, r_, t_: self.u(params, z_, r_, t_), (z, r, t),
                    (v_tan, torch.zeros_like(r), torch.ones_like(t)))
        target = (v_c - (t - r)[:, None] * du).detach()
        mf = ((u - target) ** 2).sum(-1).mean()
        anchor = ((self.u(params, z, r_near, t) - v_c) ** 2).sum(-1).mean()
        return mf + self.anchor * anchor

    def step(self) -> None:
        E, B, d = self.members, self.batch, self.dim
        x, e = torch.randn(E, B, d), torch.randn(E, B, d)
        ab = torch.rand(2, E, B)
        t, r = ab.max(0).values, ab.min(0).values
        r = torch.where(torch.rand(E, B) < self.ratio, r, t)
        self.opt.zero_grad(set_to_none=True)
        losses = vmap(self.member_loss)(self.params, self.proxy, self.alpha, x, e, t, r)
        losses.sum().backward()
        with torch.no_grad():
            grads = [p.grad for p in self.params.values()]
            norms = torch.stack([g.reshape(E, -1).pow(2).sum(1) for g in grads]).sum(0).sqrt()
            scale = (1.0 / (norms + 1e-6)).clamp(max=1.0)
            for g in grads:
                g.mul_(scale.view(-1, *([1] * (g.dim() - 1))))
            self.opt.step()
            for target, decay in ((self.ema, 0.999), (self.proxy, 0.99)):
                torch._foreach_lerp_(list(target.values()), list(self.params.values()), 1 - decay)
