"""A training length chosen from alpha = 0 alone (docs/dgmm.md, "Training length"): for each setting of a sweep
folder, the seed-mean `eval/sw1` curve of its alpha = 0 cells, and the shortest candidate length whose value is
at most `--tolerance` above the lowest value anywhere on that curve.

    python scripts/training_length.py runs/dgmm_length --candidates 3000,6000,9000,12000 --tolerance 0.05

Only alpha = 0 is read (a cell at any other alpha is refused), so the choice cannot lean on the alpha comparison
it is made for.
"""
from __future__ import annotations

import argparse

from mfsweep.report.aggregate import alpha_rows, collect, group_settings, mean_sem, read_history
from mfsweep.report.formatting import fmt_pm
from mfsweep.report.verdict import values_at_steps

KEY = "eval/sw1"


def curve(row) -> dict[int, list[float]]:
    """Step -> the completed seeds' `eval/sw1` at that step (steps every seed logged)."""
    per_seed = [values_at_steps(read_history(row.cells[s]), KEY) for s in row.seeds if row.status[s] == "completed"]
    steps = sorted(set.intersection(*(set(v) for v in per_seed))) if per_seed else []
    return {step: [v[step] for v in per_seed] for step in steps}


def chosen(means: dict[int, float], candidates: list[int], tolerance: float) -> int | None:
    """The shortest candidate within `tolerance` (a share) of the curve's lowest seed mean."""
    low = min(means.values())
    return next((c for c in candidates if c in means and means[c] <= (1 + tolerance) * low), None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep_dir")
    parser.add_argument("--candidates", default="3000,6000,9000,12000", help="comma-separated step counts")
    parser.add_argument("--tolerance", type=float, default=0.05, help="share above the curve's lowest value")
    args = parser.parse_args()
    candidates = sorted(int(c) for c in args.candidates.split(","))
    settings = group_settings(alpha_rows(collect(args.sweep_dir)))
    print(f"| setting | seeds | {KEY} at " + ", ".join(f"{c:,}" for c in candidates)
          + " (mean ± SEM) | lowest (step) | chosen |")
    print("|" + " --- |" * 5)
    for setting in settings:
        if any(r.alpha != 0.0 for r in setting.rows):
            raise SystemExit(f"{args.sweep_dir}: {setting.label} has alphas other than 0; this choice reads alpha = 0 only")
        values = curve(setting.rows[0])
        if not values:
            print(f"| {setting.label} | 0 | - | - | - |")
            continue
        stats = {step: mean_sem(v) for step, v in values.items()}
        means = {step: m for step, (m, _) in stats.items()}
        low = min(means, key=means.get)
        at = ", ".join(fmt_pm(*stats[c]) if c in stats else "-" for c in candidates)
        pick = chosen(means, candidates, args.tolerance)
        print(f"| {setting.label} | {len(values[low])} | {at} | {means[low]:.4f} ({low:,}) | "
              f"{'-' if pick is None else f'{pick:,}'} |")


if __name__ == "__main__":
    main()
