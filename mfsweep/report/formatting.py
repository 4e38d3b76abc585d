"""How the report prints numbers: every table, verdict and comparison formats through here. SW1 and SW2 with a
fixed 4 decimals (`fixed`: their scale is known, so a column lines up), every other quantity (gradient
variance, FID, diagnostics, differences) at the precision its SEM carries (`fmt_pm`)."""
from __future__ import annotations

from typing import Callable

import numpy as np

FIXED_METRICS = ("sw1", "sw2")


def fixed(mean: float | None, sem: float | None, digits: int = 4) -> str:
    """`mean ± sem`, both to `digits` decimals; `-` without a mean."""
    if mean is None:
        return "-"
    return f"{mean:.{digits}f}" + (f" ± {sem:.{digits}f}" if sem is not None else "")


def decimals(sem: float, mean: float | None = None) -> int:
    """Decimal places that show `sem` to 2 significant figures (after rounding, so 0.000999 reads 0.0010), but
    never more than 6 significant figures of `mean` (a SEM at rounding-error level carries no information)."""
    places = max(0, 1 - int(np.floor(np.log10(abs(float(f"{sem:.2g}"))))))
    if mean:
        places = min(places, max(0, 5 - int(np.floor(np.log10(abs(mean))))))
    return places


def fmt_pm(mean: float | None, sem: float | None, sign: bool = False) -> str:
    """`mean ± sem` with the SEM to 2 significant figures and the mean to the same decimal place (4 significant
    figures without a SEM), so that every number printed carries the precision it has."""
    if mean is None:
        return "-"
    plus = "+" if sign else ""
    if sem is None or sem == 0 or not np.isfinite(sem):
        return f"{mean:{plus}.4g}"
    places = decimals(sem, mean)
    return f"{mean:{plus}.{places}f} ± {sem:.{places}f}"


def metric_formatter(metric: str) -> Callable[[float | None, float | None], str]:
    """How a metric's `mean ± SEM` is printed: `fixed` for SW1 and SW2, `fmt_pm` for the rest."""
    return fixed if metric in FIXED_METRICS else fmt_pm
