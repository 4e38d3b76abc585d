"""The sweep's tables: the per-alpha summary (CSV rows, aligned text) and the report's tables, each a
`Table` of plain values (for notebooks) with its display text (for text, markdown and HTML)."""
from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mfsweep.sweep.aggregate import (
    NOT_COMPLETED, Row, Setting, best_alpha, expected_dir, paired_difference, setting_label, varying_keys,
)


def fmt(mean: float | None, sem: float | None, digits: int = 4) -> str:
    if mean is None:
        return "-"
    return f"{mean:.{digits}f}" + (f" ± {sem:.{digits}f}" if sem is not None else "")


def fmt_auto(mean: float | None, sem: float | None) -> str:
    """Like `fmt`, with 4 significant digits, for metrics whose scale is unknown (gradient variance, FID)."""
    if mean is None:
        return "-"
    return f"{mean:.4g}" + (f" ± {sem:.2g}" if sem is not None else "")


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
    return _aligned(header, lines)


def _aligned(header: list[str], lines: list[list[str]]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *lines)]
    render = lambda cols: "  ".join(str(c).ljust(w) for c, w in zip(cols, widths)).rstrip()  # noqa: E731
    return "\n".join([render(header), render(["-" * w for w in widths])] + [render(l) for l in lines])


# ---------------------------------------------------------------------------------------------------------
# The report's tables
# ---------------------------------------------------------------------------------------------------------

@dataclass
class Table:
    """`rows[i][columns[j]]` is the plain value (number, string, None or a `Row.stat` dict) that
    `cells[i][j]` displays; `bold` holds the (i, j) to emphasise (the best alpha of a row) and `bold_means`
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

    def text(self) -> str:
        lines = [[f"*{c}*" if (i, j) in self.bold else c for j, c in enumerate(row)]
                 for i, row in enumerate(self.cells)]
        note = self.legend("*...*")
        return "\n".join([self.title, _aligned(self.columns, lines)] + ([note] if note else []))

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


def stat_text(stat: dict[str, Any] | None, formatter=fmt) -> str:
    """A cell of a table: mean ± SEM over the completed seeds, with what did not complete, e.g.
    `0.4123 ± 0.0100`, `0.4123 ± 0.0100 [diverged (1/3)]`, `failed (3/3)`, `missing`."""
    if stat is None:
        return "not in grid"
    bad = [f"{s} ({stat[s]}/{stat['seeds']})" for s in NOT_COMPLETED if stat[s]]
    if stat["mean"] is None:
        return ", ".join(bad) or "-"
    return formatter(stat["mean"], stat["sem"]) + (f" [{', '.join(bad)}]" if bad else "")


def _change(stat: dict[str, Any] | None, base: dict[str, Any] | None) -> float | None:
    if not stat or not base or stat["mean"] is None or not base["mean"]:
        return None
    return 100.0 * (stat["mean"] - base["mean"]) / base["mean"]


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:+.1f}%"


def _formatter(metric: str):
    return fmt if metric in ("sw1", "sw2") else fmt_auto


def headline_table(settings: list[Setting], metrics: tuple[str, ...]) -> Table:
    """alpha = 0 vs the SW1-best alpha vs alpha = 1, per setting and metric: changes relative to alpha = 0,
    and the paired per-seed difference (`paired_difference`)."""
    columns = ["setting", "metric", "alpha = 0", "best alpha", "at best alpha", "best vs 0", "best - 0 (paired)",
               "alpha = 1", "1 vs 0", "1 - 0 (paired)"]
    rows, cells = [], []
    for s in settings:
        best = best_alpha(s, "sw1")
        zero, at_best, one = (s.row(a) if a is not None else None for a in (0.0, best, 1.0))
        for m in metrics:
            f = _formatter(m)
            st = {k: r.stat(m) if r else None for k, r in (("zero", zero), ("best", at_best), ("one", one))}
            paired = {k: paired_difference(r, zero, m) if r and zero else None
                      for k, r in (("best", at_best), ("one", one))}
            row = {"setting": s.label, "metric": m, "alpha = 0": st["zero"], "best alpha": best,
                   "at best alpha": st["best"], "best vs 0": _change(st["best"], st["zero"]),
                   "best - 0 (paired)": paired["best"], "alpha = 1": st["one"],
                   "1 vs 0": _change(st["one"], st["zero"]),
                   "1 - 0 (paired)": paired["one"]}
            rows.append(row)
            cells.append([s.label, m.upper(), stat_text(st["zero"], f), "none" if best is None else f"{best:g}",
                          stat_text(st["best"], f) if best is not None else "-", _pct(row["best vs 0"]),
                          _paired_text(paired["best"], f), stat_text(st["one"], f), _pct(row["1 vs 0"]),
                          _paired_text(paired["one"], f)])
    note = ("Mean ± SEM over the completed seeds. Best alpha: lowest mean SW1 among the alphas whose every seed "
            "completed (an alpha with a failed, diverged or missing seed is shown but not a candidate; exact ties "
            "go to the smaller alpha); SW2 and FID are read at that same alpha. 'vs 0': change of the mean relative "
            "to alpha = 0 (negative is better). 'paired': mean ± SEM over seeds of the per-seed difference, on the "
            "seeds completed at both alphas (seeds share weights and random draws across alphas).")
    return Table("alpha = 0 vs best alpha vs alpha = 1", columns, rows, cells, note=note)


def _paired_text(diff: dict[str, Any] | None, formatter) -> str:
    if diff is None or diff["mean"] is None:
        return "-"
    sign = "+" if diff["mean"] >= 0 else ""
    return sign + formatter(diff["mean"], diff["sem"]) + f" (n={diff['n']})"


def grid_table(settings: list[Setting], metric: str, title: str) -> Table:
    """Settings x alphas of `metric`, mean ± SEM; each row's best alpha (`best_alpha`'s rule) in bold."""
    alphas = sorted({a for s in settings for a in s.alphas})
    columns = ["setting"] + [f"alpha = {a:g}" for a in alphas]
    rows, cells, bold = [], [], set()
    for i, s in enumerate(settings):
        best = best_alpha(s, metric)
        stats = [s.row(a).stat(metric) if s.row(a) else None for a in alphas]
        rows.append({"setting": s.label} | dict(zip(columns[1:], stats)))
        cells.append([s.label] + [stat_text(st, _formatter(metric)) for st in stats])
        bold |= {(i, j + 1) for j, a in enumerate(alphas) if a == best}
    means = f"the lowest mean {metric.upper()} of the row among alphas with every seed completed."
    return Table(title, columns, rows, cells, bold, bold_means=means)


def settings_table(settings: list[Setting], held: list[tuple[dict, dict]]) -> Table:
    """What each setting trained, read from its records, and its loss keys held fixed across alpha."""
    columns = ["setting", "task", "dataset", "dim", "tangent", "anchor_weight", "adaptive_p", "steps", "alphas",
               "seeds", "loss keys held fixed across alpha", "loss keys that vary with alpha"]
    rows, cells = [], []
    for s, (fixed, varying) in zip(settings, held):
        row = {"setting": s.label} | {k: s.keys[k] for k in columns[1:7]} | {
            "steps": s.steps(), "alphas": s.alphas, "seeds": s.seeds,
            "loss keys held fixed across alpha": fixed, "loss keys that vary with alpha": varying}
        rows.append(row)
        cells.append([s.label] + [str(s.keys[k]) for k in columns[1:7]] + [
            ", ".join(map(str, row["steps"])) or "-", ", ".join(f"{a:g}" for a in s.alphas),
            ", ".join(map(str, s.seeds)), ", ".join(f"{k}={v}" for k, v in fixed.items()) or "-",
            "; ".join(f"{k}: " + ", ".join(f"{v} at alpha={a:g}" for a, vs in by.items() for v in vs)
                      for k, by in varying.items()) or "none"])
    note = ("Loss keys come from each cell's resolved config.yaml (`loss` section), i.e. what the sweep file "
            "set; anchor_weight and adaptive_p are also setting keys, so cells that differ in them are separate "
            "settings. Steps: those of the completed cells.")
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
                folder = cell.path if cell else expected_dir(s, r.alpha, seed)
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
    """The records' diagnostics (docs/method.md 4: alpha*, kappa, sigma2, bias2) per setting and alpha."""
    columns = ["setting", "alpha", "done"] + keys
    rows, cells = [], []
    for s in settings:
        for r in s.rows:
            stats = [r.stat(k, "diagnostics") for k in keys]
            rows.append({"setting": s.label, "alpha": r.alpha, "done": r.count("completed")} | dict(zip(keys, stats)))
            cells.append([s.label, f"{r.alpha:g}", f"{r.count('completed')}/{len(r.seeds)}"]
                         + [fmt_auto(st["mean"], st["sem"]) for st in stats])
    return Table("Diagnostics (mean ± SEM over completed seeds)", columns, rows, cells)


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
            cells.append([label, str(step)] + [fmt_auto(v, None) for v in values])
    return Table(title, columns, rows, cells, note="Mean over the completed seeds at each logged step.")
