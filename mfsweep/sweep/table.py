"""The per-alpha summary table of a sweep, as CSV rows and as aligned text."""
from __future__ import annotations

from typing import Any

from mfsweep.sweep.aggregate import Row, setting_label, varying_keys


def fmt(mean: float | None, sem: float | None, digits: int = 4) -> str:
    if mean is None:
        return "-"
    return f"{mean:.{digits}f}" + (f" ± {sem:.{digits}f}" if sem is not None else "")


def csv_rows(rows: list[Row], metrics: tuple[str, ...]) -> list[dict[str, Any]]:
    out = []
    for r in rows:
        d = dict(r.setting) | {"alpha": r.alpha, "n_seeds": len(r.seeds), "completed": r.count("completed"),
                               "failed": r.count("failed"), "diverged": r.count("diverged"), "missing": r.count("missing")}
        for m in metrics:
            d[f"{m}_mean"], d[f"{m}_sem"] = r.stats.get(m, (None, None))
        out.append(d)
    return out


def text_table(rows: list[Row], metrics: tuple[str, ...]) -> str:
    """Aligned text: setting, alpha, completed/seeds, each metric as mean ± SEM, and what did not complete."""
    varying = varying_keys(rows)
    shown = [m for m in metrics if any(r.stats.get(m, (None,))[0] is not None for r in rows)]
    header = ["setting", "alpha", "done"] + [m.upper() for m in shown] + ["not completed"]
    lines = []
    for r in rows:
        bad = [f"seed {s}: {st}" for s, st in r.status.items() if st != "completed"]
        lines.append([setting_label(r.setting, varying), f"{r.alpha:g}", f"{r.count('completed')}/{len(r.seeds)}"]
                     + [fmt(*r.stats[m]) for m in shown] + [", ".join(bad)])
    widths = [max(len(str(x)) for x in col) for col in zip(header, *lines)]
    render = lambda cols: "  ".join(str(c).ljust(w) for c, w in zip(cols, widths)).rstrip()  # noqa: E731
    return "\n".join([render(header), render(["-" * w for w in widths])] + [render(l) for l in lines])
