"""Exponential moving average of parameters (docs/method.md 2-3: evaluation EMA and the EMA proxy)."""
from __future__ import annotations

from typing import Sequence

import torch


@torch.no_grad()
def ema_update(ema: Sequence[torch.Tensor], params: Sequence[torch.Tensor], decay: float | torch.Tensor) -> None:
    """`ema <- decay * ema + (1 - decay) * params`, in place, elementwise (so it acts per ensemble member).

    `decay` is one number, or one per ensemble member `(E,)` for parameters stacked along their first axis."""
    ema, params = list(ema), list(params)
    if isinstance(decay, torch.Tensor):
        weight = 1.0 - decay
        weights = [weight.to(p.dtype).view(-1, *([1] * (p.dim() - 1))) for p in params]
        torch._foreach_lerp_(ema, params, weights)
    else:
        torch._foreach_lerp_(ema, params, 1.0 - decay)
