"""The optimizer side of a packed ensemble: AdamW, gradient clipping and the learning-rate schedule with one
set of hyperparameters per member, as elementwise ops on the stacked parameters (no loop over members).

Parameters are stacked along their first axis (`(E, ...)`); an unstacked model is one member (`E = 1`). A
per-member value `(E,)` broadcasts as `values.view(E, 1, ..., 1)`, so each member's slice sees exactly the
scalar a single run of its cell would use.
"""
from __future__ import annotations

from typing import Iterable

import torch

from mfsweep.config.sections import LR_SCHEDULES
from mfsweep.method.errors import ConfigValueError


def member_view(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """`(E,)` values shaped to broadcast against a stacked tensor `(E, ...)`, in its dtype."""
    return values.to(like.dtype).view(-1, *([1] * (like.dim() - 1)))


@torch.no_grad()
def clip_grad_norm_per_member(params: Iterable[torch.nn.Parameter], max_norm: torch.Tensor) -> torch.Tensor:
    """Clip each member's gradient (all its parameters together) to its `max_norm` (`(E,)`; 0: no clipping);
    returns the norms before clipping, `(E,)`."""
    grads = [p.grad for p in params if p.grad is not None]
    n = max_norm.numel()
    norms = sum(g.reshape(n, -1).pow(2).sum(1) for g in grads).sqrt()
    max_norm = max_norm.to(norms.dtype)
    scale = torch.where(max_norm > 0, (max_norm / (norms + 1e-6)).clamp(max=1.0), torch.ones_like(norms))
    torch._foreach_mul_(grads, [member_view(scale, g) for g in grads])
    return norms


def lr_factor(step: int, max_steps: int, schedule: list[str], warmup: torch.Tensor) -> torch.Tensor:
    """The learning-rate multiplier at optimizer step `step` (0-based), per member: a linear warm-up over
    `warmup` steps (0: none) times the member's schedule (`LR_SCHEDULES`: `constant`, or `cosine` to 0 at
    `max_steps`)."""
    total = max(1, max_steps)
    for name in schedule:
        if name not in LR_SCHEDULES:
            raise ConfigValueError("trainer.lr_schedule", f"must be one of {list(LR_SCHEDULES)}, got {name!r}")
    shape = torch.tensor([LR_SCHEDULES[s](step, total) for s in schedule], dtype=torch.float64, device=warmup.device)
    warm = torch.where(warmup > 0, ((step + 1) / warmup.clamp(min=1)).clamp(max=1.0), torch.ones_like(warmup))
    return shape * warm


class MemberAdamW(torch.optim.Optimizer):
    """AdamW (decoupled weight decay, torch's update) with one lr, (beta1, beta2) and weight decay per member.

    `lr` is set by the caller before each step (`(E,)`: the base lr times the schedule); `betas` is `(E, 2)`
    and `weight_decay` `(E,)`. The per-member scalars are computed once per step in float64, then every update
    is one foreach op over all parameters."""

    def __init__(self, params: Iterable[torch.nn.Parameter], lr: torch.Tensor, betas: torch.Tensor,
                 weight_decay: torch.Tensor, eps: float = 1e-8):
        super().__init__(params, {"eps": eps})
        self.lr, self.betas, self.weight_decay = lr, betas, weight_decay

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        params = [p for g in self.param_groups for p in g["params"] if p.grad is not None]
        if not params:
            return loss
        eps = self.param_groups[0]["eps"]
        for p in params:
            if not self.state[p]:
                self.state[p] = {"step": 0, "exp_avg": torch.zeros_like(p), "exp_avg_sq": torch.zeros_like(p)}
        step = self.state[params[0]]["step"] + 1
        for p in params:
            self.state[p]["step"] = step
        b1, b2 = self.betas[:, 0], self.betas[:, 1]
        # The per-member scalars of this step, in float64, then cast once: (6, E).
        coeffs = torch.stack([1 - self.lr * self.weight_decay, 1 - b1, b2, 1 - b2, (1 - b2 ** step).sqrt(),
                              -self.lr / (1 - b1 ** step)]).to(params[0].dtype)
        decay, one_minus_b1, b2, one_minus_b2, bc2_sqrt, neg_step_size = (
            [c.view(-1, *([1] * (p.dim() - 1))) for p in params] for c in coeffs)
        grads = [p.grad for p in params]
        m = [self.state[p]["exp_avg"] for p in params]
        v = [self.state[p]["exp_avg_sq"] for p in params]
        torch._foreach_mul_(params, decay)
        torch._foreach_lerp_(m, grads, one_minus_b1)
        torch._foreach_mul_(v, b2)
        torch._foreach_add_(v, torch._foreach_mul(torch._foreach_mul(grads, grads), one_minus_b2))
        denom = torch._foreach_div(torch._foreach_sqrt(v), bc2_sqrt)
        torch._foreach_add_(denom, eps)
        torch._foreach_add_(params, torch._foreach_div(torch._foreach_mul(m, neg_step_size), denom))
        return loss
