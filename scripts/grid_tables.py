"""The tables of an alpha-grid write-up (docs/toy_grid.md, docs/dgmm.md, docs/extensions.md), in markdown,
from sweep folders: the same aggregation and verdicts as `mfsweep-report`, laid out one row per setting.

    python scripts/grid_tables.py runs/toy_grid                       # headline, SW1, excess, gradient variance
    python scripts/grid_tables.py runs/toy_grid runs/extensions       # ... and the schedules/proxies beside it
    python scripts/grid_tables.py runs/toy_grid runs/corner           # ... or other settings (the corner recipe)
    python scripts/grid_tables.py runs/toy_grid --evaluation quantile # from the cells' re-evaluation (mfsweep-evaluate)

Headline: SW1 at alpha = 0, the best alpha and its paired difference to alpha = 0, alpha = 1 and its paired
difference, the gradient variance at 0 and 1, and whether the verdict holds over the last third of training.
Answers: each grid's answer (better, no_better, equivalent, unresolved; docs/method.md 7).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from mfsweep.report.aggregate import (add_floor_excess, best_alpha, collect, group_settings, read_history,
                                     alpha_rows)
from mfsweep.report.compare import compare_methods, is_grid
from mfsweep.report.evaluation import check_alike, use_evaluation
from mfsweep.report.formatting import fmt_pm
from mfsweep.report.verdict import (checkpoint_key, configured_margin, matched_steps, paired_by_seed, seed_values,
                                   setting_answer, setting_histories, stability)

METRICS = ("sw1", "sw2", "grad_var", "sw1_excess")


def _paired(setting, alpha: float, metric: str = "sw1"):
    return paired_by_seed(seed_values(setting.row(alpha), metric), seed_values(setting.row(0.0), metric))


def _pct(iv, base: float) -> str:
    return f" ({100 * iv.mean / base:+.1f}%)" if iv.mean is not None and base else ""


def _star(iv) -> str:
    return "*" if iv.distinguishable else ""


def headline(grids) -> list[str]:
    out = ["| setting | SW1 at alpha = 0 | best alpha | best - 0, paired | alpha = 1 - 0, paired | "
           "gradient variance 0 -> 1 | last third of training |", "|" + " --- |" * 7]
    for s in grids:
        zero = s.row(0.0).stats["sw1"][0]
        best = best_alpha(s, "sw1")
        gb = (s.row(0.0).stats["grad_var"][0], s.row(1.0).stats["grad_var"][0] if s.row(1.0) else None)
        d_best = _paired(s, best) if best not in (None, 0.0) else None
        d_one = _paired(s, 1.0) if s.row(1.0) else None
        histories = setting_histories(s, read_history)
        key = checkpoint_key(histories)
        held = stability(matched_steps(s, histories, key)) if key else "no checkpoints"
        out.append(" | ".join([
            f"| {s.label}", fmt_pm(*s.row(0.0).stats["sw1"]), f"{best:g}",
            "-" if d_best is None else fmt_pm(d_best.mean, d_best.sem, sign=True) + _star(d_best) + _pct(d_best, zero),
            "-" if d_one is None else fmt_pm(d_one.mean, d_one.sem, sign=True) + _star(d_one) + _pct(d_one, zero),
            "-" if None in gb else f"{gb[0]:.3g} -> {gb[1]:.3g} ({100 * (gb[1] / gb[0] - 1):+.0f}%)",
            held.replace("stable over the last third of training: ", "stable: ")]) + " |")
    return out


def answers(grids) -> list[str]:
    """Each grid's answer (docs/method.md 7) with the best alpha's simultaneous and unadjusted intervals."""
    out = ["| setting | answer | best alpha | best - 0, simultaneous 95% | best - 0, unadjusted 95% | seeds per alpha "
           "| seeds a fixed grid would need |", "|" + " --- |" * 7]
    for s in grids:
        a = setting_answer(s, "sw1", configured_margin(s))
        c = a.comparison(a.best_alpha) if a.best_alpha is not None else None
        iv = (lambda pair: "-" if pair is None else f"[{pair[0]:+.2g}, {pair[1]:+.2g}]")
        out.append(" | ".join([f"| {s.label}", a.answer, "0" if c is None else f"{a.best_alpha:g}",
                               "-" if c is None else iv(c.simultaneous), "-" if c is None else iv(c.unadjusted),
                               str(min(a.seeds.values())), str(a.seeds_needed or "-")]) + " |")
    return out


def by_alpha(grids, metric: str, digits: int) -> list[str]:
    alphas = sorted({r.alpha for s in grids for r in s.rows})
    out = ["| setting | " + " | ".join(f"{a:g}" for a in alphas) + " |", "|" + " --- |" * (len(alphas) + 1)]
    for s in grids:
        best = best_alpha(s, "sw1") if metric.startswith("sw1") else None
        cells = []
        for a in alphas:
            r = s.row(a)
            v = r.stats.get(metric, (None,))[0] if r else None
            text = "-" if v is None else f"{v:.{digits}f}" if digits else f"{v:.3g}"
            cells.append(f"**{text}**" if a == best else text)
        out.append(f"| {s.label} | " + " | ".join(cells) + " |")
    return out


def methods(settings) -> list[str]:
    results = compare_methods(settings, read_history)
    out = ["| setting | method | mean alpha | SW1 | minus alpha = 0 | best constant | minus best constant | "
           "grad var | method minus alpha = 0 at checkpoints (eval/sw1: half-way, three quarters, last) |", "|" + " --- |" * 9]
    for m in results:
        steps = m.steps
        picks = [steps[(len(steps) - 1) // 2], steps[3 * (len(steps) - 1) // 4], steps[-1]] if len(steps) >= 3 else steps
        at = ", ".join(f"{st}: {fmt_pm(iv.mean, iv.sem, sign=True)}{_star(iv)}" for st, iv in picks)
        out.append(" | ".join([
            f"| {m.base}", m.method, "-" if m.mean_alpha is None else f"{m.mean_alpha:.2f}", fmt_pm(*(m.stat["mean"],
                                                                                               m.stat["sem"])),
            fmt_pm(m.vs_zero.mean, m.vs_zero.sem, sign=True) + _star(m.vs_zero), f"{m.best_constant:g}",
            "-" if m.best_constant == 0.0 or m.vs_best is None
            else fmt_pm(m.vs_best.mean, m.vs_best.sem, sign=True) + _star(m.vs_best),
            fmt_pm(*m.grad_var), at or "-"]) + " |")
    return out


def others(settings, grids, compared) -> list[str]:
    """Settings that are neither grids nor methods beside one (e.g. experiment=corner, which also changes the
    anchor weight): each alpha paired with its dataset's grid at alpha = 0 and at the same alpha."""
    done = {id(m.setting) for m in compared} | {id(g) for g in grids}
    out = ["| setting | differs from the grid in | alpha | SW1 | minus grid alpha = 0 | minus grid at the same alpha |",
           "|" + " --- |" * 6]
    for s in (s for s in settings if id(s) not in done):
        grid = next((g for g in grids if g.keys["dataset"] == s.keys["dataset"] and g.keys["dim"] == s.keys["dim"]), None)
        if grid is None:
            continue
        differs = ", ".join(f"{k}={v}" for k, v in s.keys.items() if grid.keys.get(k) != v)
        for r in s.rows:
            cells = []
            for a in (0.0, r.alpha):
                g = grid.row(a)
                iv = paired_by_seed(seed_values(r, "sw1"), seed_values(g, "sw1"))
                cells.append("-" if iv.mean is None else fmt_pm(iv.mean, iv.sem, sign=True) + _star(iv)
                             + _pct(iv, g.stats["sw1"][0]))
            out.append(" | ".join([f"| {s.keys['dataset']}", differs, f"{r.alpha:g}", fmt_pm(*r.stats["sw1"]),
                                   *cells]) + " |")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", type=Path, nargs="+")
    parser.add_argument("--evaluation", metavar="NAME", help="the cells' re-evaluation NAME (evaluations/NAME.json)")
    args = parser.parse_args()
    cells = [c for f in args.folders for c in collect(f)]
    if args.evaluation:
        use_evaluation(cells, args.evaluation)
    check_alike(cells, args.folders[0])
    add_floor_excess(cells)
    settings = group_settings(alpha_rows(cells, METRICS))
    grids = [s for s in settings if is_grid(s) and best_alpha(s, "sw1") is not None]  # a grid still running: later
    print("## Headline (paired over seeds; * : 95% t-interval excludes zero)\n")
    print("\n".join(headline(grids)))
    print("\n## Answers (simultaneous 95% intervals over the alphas; margin: verdict.margin of SW1 at alpha = 0)\n")
    print("\n".join(answers(grids)))
    print("\n## SW1 by alpha (mean over seeds; bold: best)\n")
    print("\n".join(by_alpha(grids, "sw1", 4)))
    if any(s.row(0.0).stats.get("sw1_excess", (None,))[0] is not None for s in grids):
        print("\n## SW1 minus its noise floor by alpha\n")
        print("\n".join(by_alpha(grids, "sw1_excess", 4)))
    print("\n## Gradient variance by alpha\n")
    print("\n".join(by_alpha(grids, "grad_var", 0)))
    compared = compare_methods(settings)
    if compared:
        print("\n## Schedules and proxies against the grid\n")
        print("\n".join(methods(settings)))
    rest = others(settings, grids, compared)
    if len(rest) > 2:
        print("\n## Other settings against their dataset's grid\n")
        print("\n".join(rest))


if __name__ == "__main__":
    main()
