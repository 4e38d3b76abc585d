"""The sweep's tables: the per-alpha summary (CSV rows, aligned text) and the report's tables, each a
`Table` of plain values (for notebooks) with its display text (for text, markdown and HTML)."""
from __future__ import annotations

import html
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mfsweep.report.aggregate import (
    NOT_COMPLETED, Row, Setting, best_alpha, expected_dir, paired_difference,
)
from mfsweep.report.formatting import fixed, fmt_pm, metric_formatter
from mfsweep.report.verdict import Interval, StepVerdict, Verdict, as_dict, quality_metric
from mfsweep.sweep.record import SETTING_KEYS

TERMINAL = 100  # columns the console tables and captions fit in


def csv_rows(rows: list[Row], metrics: tuple[str, ...]) -> list[dict[str, Any]]:
    out = []
    for r in rows:
        d = dict(r.setting) | {"alpha": r.alpha, "n_seeds": len(r.seeds), "completed": r.count("completed"),
                               "failed": r.count("failed"), "diverged": r.count("diverged"), "missing": r.count("missing")}
        for m in metrics:
            d[f"{m}_mean"], d[f"{m}_sem"] = r.stats.get(m, (None, None))
        out.append(d)
    return out


def _aligned(header: list[str], lines: list[list[str]], width: int | None = None) -> str:
    """Columns padded to their widest cell. With `width`, the widest columns are narrowed (their cells
    wrapped onto extra lines) until a row fits in `width` characters."""
    widths = [max(len(str(x)) for x in col) for col in zip(header, *lines)]
    if width is not None:
        while sum(widths) + 2 * (len(widths) - 1) > width and max(widths) > 8:
            widths[widths.index(max(widths))] -= 1

    def render(cols: list[str]) -> list[str]:
        wrapped = [textwrap.wrap(str(c), w, break_on_hyphens=False) or [""] for c, w in zip(cols, widths)]
        return ["  ".join((parts[k] if k < len(parts) else "").ljust(w) for parts, w in zip(wrapped, widths)).rstrip()
                for k in range(max(len(p) for p in wrapped))]

    out = render(header) + ["  ".join("-" * w for w in widths)]
    for line in lines:
        out += render(line)
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------------------
# The report's tables
# ---------------------------------------------------------------------------------------------------------

@dataclass
class Table:
    """`rows[i][columns[j]]` is the plain value (number, string, None or a `Row.stat` dict) that
    `cells[i][j]` displays (a row may hold more, which the note tells); `bold` holds the (i, j) to emphasise (the best alpha of a row) and `bold_means`
    what the emphasis means, which each format prefixes with its own marker."""

    title: str
    columns: list[str]
    rows: list[dict[str, Any]]
    cells: list[list[str]]
    bold: set[tuple[int, int]] = field(default_factory=set)
    note: str = ""
    bold_means: str = ""

    def legend(self, marker: str) -> str:
        """The note, after the emphasis legend written with `marker` (`Bold`, or `*...*` in plain text)."""
        legend = f"{marker}: {self.bold_means}" if self.bold and self.bold_means else ""
        return " ".join(part for part in (legend, self.note) if part)

    def text(self, width: int = TERMINAL) -> str:
        """Aligned plain text within `width` columns: long cells wrap, and so do the title and the note."""
        lines = [[f"*{c}*" if (i, j) in self.bold else c for j, c in enumerate(row)]
                 for i, row in enumerate(self.cells)]
        note = self.legend("*...*")
        return "\n".join(textwrap.wrap(self.title, width) + [_aligned(self.columns, lines, width)]
                         + textwrap.wrap(note, width))

    def markdown(self) -> str:
        esc = lambda s: str(s).replace("|", "\\|").replace("\n", " ")  # noqa: E731
        lines = ["| " + " | ".join(esc(c) for c in self.columns) + " |", "|" + " --- |" * len(self.columns)]
        for i, row in enumerate(self.cells):
            lines.append("| " + " | ".join(f"**{esc(c)}**" if (i, j) in self.bold else esc(c)
                                           for j, c in enumerate(row)) + " |")
        note = self.legend("Bold")
        return "\n".join(lines + ([f"\n{note}"] if note else []))

    def html(self) -> str:
        head = "".join(f"<th>{html.escape(c)}</th>" for c in self.columns)
        body = "".join("<tr>" + "".join(f"<td><b>{html.escape(c)}</b></td>" if (i, j) in self.bold
                                        else f"<td>{html.escape(c)}</td>" for j, c in enumerate(row)) + "</tr>"
                       for i, row in enumerate(self.cells))
        note = self.legend("Bold")
        note = f"<p class='note'>{html.escape(note)}</p>" if note else ""
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{note}"


def stat_text(stat: dict[str, Any] | None, formatter=fixed) -> str:
    """A cell of a table: mean ± SEM over the completed seeds, with what did not complete, e.g.
    `0.4123 ± 0.0100`, `0.4123 ± 0.0100 [diverged (1/3)]`, `failed (3/3)`, `missing`."""
    if stat is None:
        return "not in grid"
    bad = [f"{s} ({stat[s]}/{stat['seeds']})" for s in NOT_COMPLETED if stat[s]]
    if stat["mean"] is None:
        return ", ".join(bad) or "-"
    return formatter(stat["mean"], stat["sem"]) + (f" [{', '.join(bad)}]" if bad else "")


def headline_table(settings: list[Setting], metrics: tuple[str, ...],
                   floors: dict[tuple[str, str], float | None]) -> Table:
    """Per setting and metric: alpha = 0 against the best alpha by the setting's quality metric (SW1, or FID
    where no cell recorded SW1: `quality_metric`), with the paired per-seed difference (`paired_difference`)
    and the noise floor (`floors[setting, metric]`, e.g. the mean `sw1_floor`)."""
    columns = ["setting", "metric", "best alpha", "alpha = 0", "best alpha's", "best - 0 (paired)", "floor"]
    rows, cells = [], []
    for s in settings:
        best = best_alpha(s, quality_metric(s))
        zero, at_best = (s.row(a) if a is not None else None for a in (0.0, best))
        for m in metrics:
            f = metric_formatter(m)
            st_zero, st_best = (r.stat(m) if r else None for r in (zero, at_best))
            paired = paired_difference(at_best, zero, m) if at_best and zero and best != 0.0 else None
            floor = floors.get((s.label, m))
            rows.append({"setting": s.label, "metric": m, "best alpha": best, "alpha = 0": st_zero,
                         "at best alpha": st_best, "best - 0 (paired)": paired, "floor": floor})
            cells.append([s.label, m.upper(), "none" if best is None else f"{best:g}", stat_text(st_zero, f),
                          "(alpha = 0)" if best == 0.0 else (stat_text(st_best, f) if best is not None else "-"),
                          "-" if best == 0.0 else _paired_text(paired), "-" if floor is None else f"{floor:.4f}"])
    note = ("Mean ± SEM over the completed seeds. Best alpha: lowest mean SW1 (FID where no cell recorded SW1) "
            "among the alphas whose every seed completed (exact ties go to the smaller alpha); the other metrics are "
            "read at that alpha. Paired: mean ± SEM "
            "over seeds of the per-seed difference (seeds share weights and random draws across alphas); evaluation SE: "
            "the part of it the evaluation's own noise contributes (docs/method.md 5). Floor: "
            "SW between two independent reference draws of the evaluation's size, the best a generator can score.")
    return Table("Best alpha against alpha = 0", columns, rows, cells, note=note)


def _paired_text(diff: dict[str, Any] | None) -> str:
    """A paired difference at the precision its SEM carries (a fixed 4 decimals would print tiny ones as 0)."""
    if diff is None or diff["mean"] is None:
        return "-"
    evaluation = f"; evaluation SE {diff['eval_se']:.2g}" if diff.get("eval_se") is not None else ""
    return fmt_pm(diff["mean"], diff["sem"], sign=True) + f" (n={diff['n']}{evaluation})"


def verdict_table(verdicts: list[Verdict]) -> Table:
    """The answer per setting (simultaneous intervals) beside the best alpha's unadjusted verdict, as plain rows
    (`verdict.as_dict`) for notebooks and summary files."""
    rows = [as_dict(v) for v in verdicts]
    return Table("Verdict", ["answer", "best alpha against alpha = 0, unadjusted (as in the paper)"], rows,
                 [[r["answer sentence"] or "-", r["sentence"]] for r in rows])


def matched_table(label: str, key: str, steps: list[StepVerdict]) -> Table:
    """The verdict at each checkpoint of one setting: best alpha and its paired difference to alpha = 0
    (the runner-up's, marked, when alpha = 0 is best)."""
    columns = ["step", "best alpha", "compared", f"{key} minus at alpha = 0 (paired)", "n", "distinguishable"]
    rows, cells = [], []
    for v in steps:
        d = v.difference
        rows.append({"step": v.step, "best alpha": v.best, "compared": v.against,
                     "difference": None if d is None else d.mean, "sem": None if d is None else d.sem,
                     "n": 0 if d is None else d.n, "distinguishable": bool(d and d.distinguishable)})
        cells.append([str(v.step), f"{v.best:g}", "-" if v.against is None else (
            f"{v.against:g}" + (" (runner-up)" if v.best == 0.0 else "")),
            "-" if d is None else fmt_pm(d.mean, d.sem, sign=True), "-" if d is None else str(d.n),
            "-" if d is None or d.sem is None else ("yes" if d.distinguishable else "no")])
    note = ("Best alpha at each checkpoint: lowest mean over seeds among alphas whose every seed completed. "
            "Distinguishable: the 95% paired t-interval over seeds excludes zero.")
    return Table(f"{label}: {key} at matched steps", columns, rows, cells, note=note)


def _interval_cell(iv: Interval | None) -> str:
    """`-0.0031 ± 0.0009*`: paired mean ± SEM, starred when the 95% t-interval excludes zero."""
    if iv is None or iv.mean is None:
        return "-"
    return fmt_pm(iv.mean, iv.sem, sign=True) + ("*" if iv.distinguishable else "")


def _interval_row(iv: Interval | None) -> dict[str, Any]:
    return {"mean": None, "sem": None, "n": 0, "distinguishable": False} if iv is None else {
        "mean": iv.mean, "sem": iv.sem, "n": iv.n, "distinguishable": iv.distinguishable}


def methods_table(results: list) -> Table:
    """Schedules and proxies against their grid (`compare.MethodResult`): the metric, its paired difference
    to alpha = 0 and to the grid's best constant alpha, mean alpha, gradient variance and wall time."""
    metric = results[0].metric.upper() if results else "SW1"
    columns = ["setting", "method", "mean alpha", metric, "minus alpha = 0", "best constant",
               "minus best constant", "grad var", "wall s"]
    rows, cells = [], []
    for m in results:
        rows.append({"setting": m.base, "method": m.method, "spec": m.spec, "mean alpha": m.mean_alpha,
                     m.metric: m.stat, "minus alpha = 0": _interval_row(m.vs_zero),
                     "best constant": m.best_constant, "minus best constant": _interval_row(m.vs_best),
                     "grad_var": m.grad_var[0], "wall_s": m.wall_s[0]})
        cells.append([m.base, m.method, "-" if m.mean_alpha is None else f"{m.mean_alpha:.2f}",
                      stat_text(m.stat, metric_formatter(m.metric)), _interval_cell(m.vs_zero),
                      "-" if m.best_constant is None else f"{m.best_constant:g}",
                      "-" if m.best_constant == 0.0 else _interval_cell(m.vs_best),
                      fmt_pm(*m.grad_var), "-" if m.wall_s[0] is None else f"{m.wall_s[0]:.0f}"])
    note = (f"Differences are the method's {metric} minus the grid's, per seed, mean ± SEM over the seeds both "
            "completed (negative: the method is better); * marks an interval that excludes zero among the "
            "method's simultaneous 95% intervals against every constant alpha of the grid (Bonferroni over the "
            "alphas, docs/method.md 7), which stay valid though the best constant was picked from the same seeds. "
            "Best constant: the grid's alpha with the lowest mean (`best alpha` of the grid's verdict). grad var: the "
            "MeanFlow term's gradient variance, second-half mean; wall s: seconds per cell (a packed cell shares "
            "its process, so compare within one launch size).")
    return Table("Schedules and proxies against the constant-alpha grid", columns, rows, cells, note=note)


def methods_steps_table(results: list, key: str) -> Table | None:
    """Each method's paired difference to alpha = 0 at every checkpoint of `key` (None when none logged it)."""
    steps = sorted({step for m in results for step, _ in m.steps})
    if not steps:
        return None
    columns = ["setting", "method"] + [str(s) for s in steps]
    rows, cells = [], []
    for m in results:
        at = dict(m.steps)
        rows.append({"setting": m.base, "method": m.method} | {str(s): _interval_row(at.get(s)) for s in steps})
        cells.append([m.base, m.method] + [_interval_cell(at.get(s)) for s in steps])
    note = (f"{key} of the method minus that of alpha = 0 at each checkpoint (columns: step), paired by seed, "
            "mean ± SEM; * marks an unadjusted 95% paired t-interval that excludes zero (one checkpoint at a "
            "time: a trajectory to read, not a claim).")
    return Table(f"Schedules and proxies minus alpha = 0 at matched steps ({key})", columns, rows, cells, note=note)


def grid_table(settings: list[Setting], metric: str, title: str) -> Table:
    """Settings x alphas of `metric`, mean ± SEM; each row's best alpha (`best_alpha`'s rule) in bold. A setting
    under a schedule other than constant has its value in the last column, `schedule`."""
    alphas = sorted({r.grid_alpha for s in settings for r in s.rows if r.grid_alpha is not None})
    scheduled = any(r.grid_alpha is None for s in settings for r in s.rows)
    columns = ["setting"] + [f"alpha = {a:g}" for a in alphas] + (["schedule"] if scheduled else [])
    rows, cells, bold = [], [], set()
    for i, s in enumerate(settings):
        best = best_alpha(s, metric)
        stats = [s.row(a).stat(metric) if s.row(a) else None for a in alphas]
        if scheduled:
            stats.append(next((r.stat(metric) for r in s.rows if r.grid_alpha is None), None))
        rows.append({"setting": s.label} | dict(zip(columns[1:], stats)))
        cells.append([s.label] + [stat_text(st, metric_formatter(metric)) for st in stats])
        bold |= {(i, j + 1) for j, a in enumerate(alphas) if a == best}
    means = (f"the lowest mean {metric.upper().replace('_EXCESS', ' excess over the floor')} of the row among alphas "
             "with every seed completed.")
    return Table(title, columns, rows, cells, bold, bold_means=means)


def settings_table(settings: list[Setting], held: list[tuple[dict, dict]]) -> Table:
    """What each setting trained, read from its records, and its loss keys held fixed across alpha. The loss
    keys are long, so they are written below the table (its note; each row holds them as plain values) rather
    than as columns that would run off the page."""
    columns = ["setting", *SETTING_KEYS, "steps", "alphas", "seeds"]
    rows, cells, loss_keys = [], [], []
    for s, (held_fixed, varying) in zip(settings, held):
        rows.append({"setting": s.label} | {k: s.keys[k] for k in SETTING_KEYS} | {
            "steps": s.steps(), "alphas": s.alphas, "seeds": s.seeds,
            "loss keys held fixed across alpha": held_fixed, "loss keys that vary with alpha": varying})
        cells.append([s.label] + [str(s.keys[k]) for k in SETTING_KEYS] + [
            ", ".join(map(str, rows[-1]["steps"])) or "-",
            ", ".join(f"{a:g}" if r.grid_alpha is not None else f"mean {a:g}" for a, r in zip(s.alphas, s.rows)),
            ", ".join(map(str, s.seeds))])
        vary = "; ".join(f"{k}: " + ", ".join(f"{v} at alpha={a:g}" for a, vs in by.items() for v in vs)
                         for k, by in varying.items()) or "none"
        loss_keys.append(f"{s.label}: held fixed across alpha "
                         f"{', '.join(f'{k}={v}' for k, v in held_fixed.items()) or '-'}; varying with alpha {vary}.")
    note = (" ".join(["Loss keys:", *loss_keys]) + " Loss keys come from each cell's resolved config.yaml (`loss` "
            "section), i.e. what the sweep file set; anchor_weight and adaptive_p are also setting keys, so cells "
            "that differ in them are separate settings. Steps: those of the completed cells.")
    return Table("Settings", columns, rows, cells, note=note)


def problems_table(settings: list[Setting], root: Path | None = None) -> Table:
    """Every cell that did not complete: failed (with its error), diverged (with its step) or missing.
    Folders are shown relative to `root` (the rows keep them whole)."""
    columns = ["setting", "alpha", "seed", "status", "detail", "folder"]
    rows, cells = [], []
    for s in settings:
        for r in s.rows:
            for seed in r.seeds:
                status = r.status[seed]
                if status == "completed":
                    continue
                cell = r.cells.get(seed)
                rec = cell.record if cell else {}
                folder = cell.path if cell else expected_dir(s, r.grid_alpha, seed)
                detail = {"failed": rec.get("error") or "",
                          "diverged": f"diverged at step {rec.get('diverged_step')}",
                          "missing": rec.get("reason") or "no result.json (not run, still running, or killed)"}[status]
                rows.append({"setting": s.label, "alpha": r.alpha, "seed": seed, "status": status,
                             "detail": detail, "folder": str(folder) if folder else None})
                first_line = detail.strip().splitlines()[0] if detail.strip() else ""
                cells.append([s.label, f"{r.alpha:g}", str(seed), status, first_line[:200], _shown(folder, root)])
    return Table("Cells that did not complete", columns, rows, cells)


def _shown(folder: Path | None, root: Path | None) -> str:
    if folder is None:
        return "?"
    return str(folder.relative_to(root)) if root is not None and folder.is_relative_to(root) else str(folder)


def diagnostics_table(settings: list[Setting], keys: list[str]) -> Table:
    """The records' diagnostics (docs/method.md 4: alpha*, kappa, sigma2, bias2) per setting and alpha. A key
    with one value in every cell, or with the same values as a key before it, says nothing per alpha: it is
    left out of the columns and named in the note (the rows keep it)."""
    stats = {(s.label, r.alpha): {k: r.stat(k, "diagnostics") for k in keys} for s in settings for r in s.rows}
    shown, said = [], []
    for k in keys:
        values = [v for st in stats.values() for v in st[k]["values"]]
        twin = next((j for j in shown if all(st[j]["values"] == st[k]["values"] for st in stats.values())), None)
        if values and len(set(values)) == 1:
            said.append(f"{k} is {values[0]:.4g} in every cell")
        elif twin is not None:
            said.append(f"{k} equals {twin} in every cell")
        else:
            shown.append(k)
    columns = ["setting", "alpha", "done"] + shown
    rows, cells = [], []
    for s in settings:
        for r in s.rows:
            st = stats[s.label, r.alpha]
            rows.append({"setting": s.label, "alpha": r.alpha, "done": r.count("completed")} | st)
            cells.append([s.label, f"{r.alpha:g}", f"{r.count('completed')}/{len(r.seeds)}"]
                         + [fmt_pm(st[k]["mean"], st[k]["sem"]) for k in shown])
    note = "; ".join(said) + " (not shown as columns)." if said else ""
    return Table("Diagnostics (mean ± SEM over completed seeds)", columns, rows, cells, note=note)


def steps_table(curves: dict[str, dict[float, tuple[Any, Any]]], alphas: list[float], title: str) -> Table:
    """A quantity logged at checkpoints: rows (setting, step), columns alphas, each the mean over seeds.
    `curves[setting][alpha] = (steps, means)`."""
    columns = ["setting", "step"] + [f"alpha = {a:g}" for a in alphas]
    rows, cells = [], []
    for label, by_alpha in curves.items():
        for step in sorted({int(t) for steps, _ in by_alpha.values() for t in steps}):
            values = []
            for a in alphas:
                steps, means = by_alpha.get(a, ((), ()))
                hit = [float(v) for t, v in zip(steps, means) if int(t) == step]
                values.append(hit[0] if hit else None)
            rows.append({"setting": label, "step": step} | dict(zip(columns[2:], values)))
            cells.append([label, str(step)] + [fmt_pm(v, None) for v in values])
    return Table(title, columns, rows, cells, note="Mean over the completed seeds at each logged step.")
