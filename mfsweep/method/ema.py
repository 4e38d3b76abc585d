"""Exponential moving average of parameters (docs/method.md 2-3: evaluation EMA and the EMA proxy)."""
from __future__ import annotations

from typing import Sequence

import torch


@torch.no_grad()
def ema_update(ema: Sequence[torch.Tensor], params: Sequence[torch.Tensor], decay: float) -> None:
    """`ema <- decay * ema + (1 - decay) * params`, in place, elementwise (so it acts per ensemble member)."""
    torch._foreach_lerp_(list(ema), list(params), 1.0 - decay)
