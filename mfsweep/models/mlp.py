"""The MLP for 2-D and Gaussian-mixture MeanFlow, stacked over ensemble members.

One `EnsembleMLP` holds `E` independent MLPs as stacked weights `(E, out, in)`, so a packed sweep of
alpha x seed members trains in one batched matmul per layer, and a single run is simply `E = 1`.
Each member sees its own batch: inputs are `(E, B, d)`. The network is `u_theta(z, r, t)`, conditioned on
`t` and `t - r` (docs/method.md 2).
"""
from __future__ import annotations

import math

import torch
from torch import nn


def _silu_tangent(dh: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """`dh * silu'(a)` as one fused kernel (ATen's SiLU backward computes exactly this product); written out as
    `s * (1 + a (1 - s))` it is five passes over the activations and a third of the step's elementwise time."""
    return torch.ops.aten.silu_backward(dh, a)


class EnsembleMLP(nn.Module):
    """`E` MLPs `[z, t, t - r] -> width -> ... -> d` with SiLU, as stacked parameters."""

    def __init__(self, n_members: int, dim: int, width: int = 128, depth: int = 3):
        super().__init__()
        for key, value in (("n_members", n_members), ("dim", dim), ("model.width", width), ("model.depth", depth)):
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"{key} must be a positive integer, got {value!r}")
        self.n_members, self.dim, self.width, self.depth = n_members, dim, width, depth
        sizes = [dim + 2] + [width] * depth + [dim]
        self.weights = nn.ParameterList(
            nn.Parameter(torch.empty(n_members, n_out, n_in)) for n_in, n_out in zip(sizes[:-1], sizes[1:])
        )
        self.biases = nn.ParameterList(nn.Parameter(torch.empty(n_members, 1, n_out)) for n_out in sizes[1:])

    def io_kwargs(self) -> dict[str, int]:
        """The constructor keys that fix what this network takes and returns: a network built with them (a
        learned velocity head, mfsweep/method/proxy.py) fits beside it."""
        return {"n_members": self.n_members, "dim": self.dim}

    @torch.no_grad()
    def init_member(self, i: int, generator: torch.Generator) -> None:
        """Initialise member `i` like `nn.Linear` does (uniform in +-1/sqrt(fan_in)), from its own generator,
        so member i of a packed ensemble starts where a single run with the same seed starts."""
        for w, b in zip(self.weights, self.biases):
            bound = 1.0 / math.sqrt(w.shape[-1])
            w[i].copy_(torch.rand(w.shape[1:], generator=generator) * 2 * bound - bound)
            b[i].copy_(torch.rand(b.shape[1:], generator=generator) * 2 * bound - bound)

    def _inputs(self, z: torch.Tensor, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return torch.cat([z, t.unsqueeze(-1), (t - r).unsqueeze(-1)], dim=-1)  # (E, B, d + 2)

    def forward(self, z: torch.Tensor, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """`u_theta(z, r, t)`: z (E, B, d), r and t (E, B) -> (E, B, d)."""
        h = self._inputs(z, r, t)
        last = len(self.weights) - 1
        for k, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = torch.baddbmm(b, h, w.transpose(1, 2))  # (E, B, n_out)
            if k < last:
                h = nn.functional.silu(h)
        return h

    def jvp(
        self, z: torch.Tensor, r: torch.Tensor, t: torch.Tensor,
        dz: torch.Tensor, dr: torch.Tensor, dt: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`(u, du)`: the prediction and its directional derivative along `(dz, dr, dt)`.

        Hand-written forward-mode pass: the tangent reuses each layer's pre-activation, so it costs one
        extra matmul per layer and no autograd graph (it only ever feeds the stop-gradient target). Equal to
        `functional_jvp(self, ...)`; tested against it and against finite differences.
        """
        h = self._inputs(z, r, t)
        with torch.no_grad():
            dh = torch.cat([dz, dt.unsqueeze(-1), (dt - dr).unsqueeze(-1)], dim=-1)
        last = len(self.weights) - 1
        for k, (w, b) in enumerate(zip(self.weights, self.biases)):
            a = torch.baddbmm(b, h, w.transpose(1, 2))  # (E, B, n_out)
            with torch.no_grad():
                dh = torch.bmm(dh, w.transpose(1, 2))
                if k < last:
                    dh = _silu_tangent(dh, a)
            h = nn.functional.silu(a) if k < last else a
        return h, dh
