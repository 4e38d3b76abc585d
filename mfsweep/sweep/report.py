"""The alpha-comparison report of a sweep folder: gather the records (aggregate) -> tables and figures
(table, plots) -> one self-contained HTML page and a markdown page with PNG files.

    report = build_report("multirun/2026-11-23/10-00-00")   # tables: Table (plain rows); figures: Figure
    report.tables["sw1_grid"].rows[0]["alpha = 0.5"]["mean"]
    write_report(report)                                     # report.html, report.md, report_files/, summary.csv

Sections that need data the sweep does not have (gradient variance, FID, diagnostics, 2-D samples) are
left out; cells that did not complete are shown in every table and listed with their errors.
"""
from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from mfsweep.sweep.aggregate import (
    NOT_COMPLETED, Row, Setting, best_alpha, collect, diagnostic_keys, group_settings, loss_settings,
    mean_history, paired_difference, read_history, summarise,
)
from mfsweep.sweep.atomic import write_bytes_atomic, write_csv_atomic
from mfsweep.sweep.plots import (
    AlphaPanel, AlphaStarPanel, CurvePanel, SamplePanel, curves_by_alpha, metric_vs_alpha, predicted_vs_measured,
    samples_grid,
)
from mfsweep.sweep.record import SAMPLES
from mfsweep.sweep.table import (
    Table, csv_rows, diagnostics_table, grid_table, headline_table, problems_table, settings_table, steps_table,
)

METRICS = ("sw1", "sw2", "fid", "grad_var")
HTML, MARKDOWN, FILES, SUMMARY = "report.html", "report.md", "report_files", "summary.csv"
SCATTER_POINTS = 2000  # per panel: enough to see the shape, small enough to keep the page light
DPI = 110


@dataclass
class Section:
    """A part of the page: paragraphs, then tables and figures (by key in the report), then code blocks."""

    title: str
    text: list[str] = field(default_factory=list)
    tables: list[str] = field(default_factory=list)
    figures: list[tuple[str, str]] = field(default_factory=list)  # (figure key, caption)
    code: list[tuple[str, str]] = field(default_factory=list)  # (label, preformatted text)


@dataclass
class Report:
    sweep_dir: Path
    settings: list[Setting]
    rows: list[Row]
    counts: dict[str, int]  # cells per status, `missing` included
    tables: dict[str, Table]
    figures: dict[str, Figure]
    sections: list[Section]


# ---------------------------------------------------------------------------------------------------------
# Gather
# ---------------------------------------------------------------------------------------------------------

def _present(settings: list[Setting], metric: str) -> bool:
    return any(c.record["metrics"].get(metric) is not None for s in settings for c in s.cells())


def _histories(settings: list[Setting]) -> dict[tuple[str, float], list[dict[str, np.ndarray]]]:
    """The completed cells' histories per (setting, alpha), read once."""
    return {(s.label, r.alpha): [read_history(c) for c in r.completed()] for s in settings for r in s.rows}


def _curves(settings: list[Setting], histories, key: str) -> dict[str, dict[float, tuple[np.ndarray, np.ndarray]]]:
    """{setting: {alpha: (steps, mean over completed seeds)}} of a history column; {} when none logs it."""
    out = {}
    for s in settings:
        by_alpha = {r.alpha: c for r in s.rows if (c := mean_history(histories[s.label, r.alpha], key))}
        if by_alpha:
            out[s.label] = by_alpha
    return out


def _samples(setting: Setting) -> list[SamplePanel]:
    """Per alpha, the final samples of the lowest seed that completed with a samples file."""
    panels = []
    for r in setting.rows:
        for seed in r.seeds:
            cell = r.cells.get(seed)
            path = cell.path / (cell.record["eval"].get("samples_file") or SAMPLES) if cell else None
            if r.status[seed] == "completed" and path.exists():
                with np.load(path) as z:
                    gen = z["generated"][:SCATTER_POINTS]
                    ref = z["reference"][:SCATTER_POINTS] if "reference" in z else None
                note = "" if seed == r.seeds[0] else f"seed {seed}"
                panels.append(SamplePanel(r.alpha, gen, ref, note))
                break
        else:
            bad = ", ".join(f"{s} {r.count(s)}" for s in NOT_COMPLETED if r.count(s))
            panels.append(SamplePanel(r.alpha, note=f"no samples\n({bad or 'no samples file'})"))
    return panels


# ---------------------------------------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------------------------------------

def _alpha_panels(settings: list[Setting], metric: str) -> list[AlphaPanel]:
    return [AlphaPanel(s.label, s.alphas, [r.stats[metric][0] for r in s.rows], [r.stats[metric][1] for r in s.rows],
                       [r.complete for r in s.rows], best_alpha(s, metric)) for s in settings]


def _paired_panels(settings: list[Setting], metric: str) -> list[AlphaPanel]:
    """Per alpha, the per-seed difference to alpha = 0 (`paired_difference`), for settings with alpha = 0."""
    panels = []
    for s in settings:
        if (zero := s.row(0.0)) is None:
            continue
        diffs = [paired_difference(r, zero, metric) for r in s.rows]
        panels.append(AlphaPanel(s.label, s.alphas, [d["mean"] for d in diffs], [d["sem"] for d in diffs],
                                 [r.complete and zero.complete for r in s.rows], best_alpha(s, metric)))
    return panels


def _alpha_star_panels(settings: list[Setting], keys: list[str]) -> list[AlphaStarPanel]:
    panels = []
    for s in settings:
        predicted = {}
        for k in keys:
            stats = [r.stat(k, "diagnostics") for r in s.rows]
            if any(st["mean"] is not None for st in stats):
                predicted[k] = ([st["mean"] for st in stats], [st["sem"] for st in stats])
        if predicted:
            panels.append(AlphaStarPanel(s.label, s.alphas, predicted, best_alpha(s, "sw1")))
    return panels


# ---------------------------------------------------------------------------------------------------------
# Build
# ---------------------------------------------------------------------------------------------------------

def _errors(problems: Table) -> list[tuple[str, str]]:
    """The failed cells' full error messages, one block per distinct message (a packed job's cells share one)."""
    by_error: dict[str, list[str]] = {}
    for r, shown in zip(problems.rows, problems.cells):
        if r["status"] == "failed":
            by_error.setdefault(r["detail"], []).append(shown[-1])
    return [(f"{len(where)} failed cell{'s' * (len(where) > 1)}: " + ", ".join(where[:5])
             + (", ..." if len(where) > 5 else ""), error) for error, where in by_error.items()]


class _Sections:
    """One method per section of the page, in page order: each adds its tables and figures and returns the
    section, or None when the sweep has no data for it."""

    ORDER = ("sweep", "headline", "sw1", "grad_var", "fid", "samples", "curves", "diagnostics", "problems")

    def __init__(self, sweep_dir: Path, settings: list[Setting], counts: dict[str, int]):
        self.sweep_dir, self.settings, self.counts = sweep_dir, settings, counts
        self.tables: dict[str, Table] = {}
        self.figures: dict[str, Figure] = {}
        self.histories = _histories(settings)

    def build(self) -> list[Section]:
        return [sec for name in self.ORDER if (sec := getattr(self, name)()) is not None]

    def sweep(self) -> Section:
        n = len(self.settings)
        self.tables["settings"] = settings_table(self.settings, [loss_settings(s) for s in self.settings])
        return Section("Sweep", [f"Folder: {self.sweep_dir.resolve()}",
                                 f"{sum(self.counts.values())} cells: "
                                 + ", ".join(f"{k} {st}" for st, k in self.counts.items())
                                 + f" ({n} setting{'s' * (n > 1)})."], ["settings"])

    def headline(self) -> Section:
        quality = [m for m in ("sw1", "sw2", "fid") if _present(self.settings, m)] or ["sw1"]
        self.tables["headline"] = headline_table(self.settings, tuple(quality))
        return Section("alpha = 0 vs best alpha vs alpha = 1", tables=["headline"])

    def sw1(self) -> Section:
        self.tables["sw1_grid"] = grid_table(self.settings, "sw1", "SW1 by setting and alpha (mean ± SEM)")
        self.figures["sw1_vs_alpha"] = metric_vs_alpha(_alpha_panels(self.settings, "sw1"), "SW1")
        sec = Section("SW1 against alpha", tables=["sw1_grid"], figures=[(
            "sw1_vs_alpha", "SW1 against alpha, mean ± SEM over completed seeds. Open marker: some seed did not "
            "complete; red x on the axis: no seed completed; star: best alpha.")])
        if panels := _paired_panels(self.settings, "sw1"):
            self.figures["sw1_paired"] = metric_vs_alpha(panels, "SW1 - SW1 at alpha = 0", zero_line=True)
            sec.figures.append(("sw1_paired", "SW1 minus SW1 at alpha = 0 of the same seed, mean ± SEM over the "
                                              "seeds completed at both: the seed-to-seed spread cancels."))
        return sec

    def grad_var(self) -> Section | None:
        if not _present(self.settings, "grad_var"):
            return None
        self.tables["grad_var_grid"] = grid_table(self.settings, "grad_var",
                                                  "Gradient variance by setting and alpha (mean ± SEM)")
        self.figures["grad_var_vs_alpha"] = metric_vs_alpha(_alpha_panels(self.settings, "grad_var"), "grad_var",
                                                            log=True)
        return Section("Gradient variance against alpha", [
            "Total gradient variance of the MeanFlow term (docs/method.md 5), tail-averaged over the second half of "
            "training."], ["grad_var_grid"], [("grad_var_vs_alpha", "Gradient variance against alpha (log scale).")])

    def fid(self) -> Section | None:
        sec = Section("FID")
        if _present(self.settings, "fid"):
            self.tables["fid_grid"] = grid_table(self.settings, "fid", "FID by setting and alpha (mean ± SEM)")
            sec.tables.append("fid_grid")
        if curves := _curves(self.settings, self.histories, "eval/fid"):
            alphas = sorted({a for s in self.settings for a in s.alphas})
            self.tables["fid_steps"] = steps_table(curves, alphas, "FID per checkpoint")
            self.figures["fid_vs_step"] = curves_by_alpha([CurvePanel(k, v) for k, v in curves.items()], "FID")
            sec.tables.append("fid_steps")
            sec.figures.append(("fid_vs_step", "FID at each checkpoint, mean over completed seeds, coloured by alpha."))
        return sec if sec.tables else None

    def samples(self) -> Section | None:
        flat = [s for s in self.settings if s.keys["dim"] == 2]
        if not flat:
            return None
        self.figures["samples"] = samples_grid([(s.label, _samples(s)) for s in flat])
        return Section("Final samples", figures=[("samples", (
            f"Generated samples (colour) over the reference set (grey), first {SCATTER_POINTS} points of each cell's "
            "samples.npz, lowest completed seed (named when it is not the grid's lowest)."))])

    def curves(self) -> Section | None:
        sec = Section("Training curves")
        for key, name, log in (("train/loss_mse", "loss_curves", False), ("diag/grad_var", "grad_var_curves", True)):
            if by_setting := _curves(self.settings, self.histories, key):
                self.figures[name] = curves_by_alpha([CurvePanel(k, v) for k, v in by_setting.items()], key, log=log)
                sec.figures.append((name, f"{key} from history.csv, mean over the completed seeds of each alpha."))
        return sec if sec.figures else None

    def diagnostics(self) -> Section | None:
        if not (keys := diagnostic_keys([c for s in self.settings for c in s.cells()])):
            return None
        self.tables["diagnostics"] = diagnostics_table(self.settings, keys)
        sec = Section("Diagnostics", ["Measured in each cell (docs/method.md 4): predicted alpha*, kappa, sigma2, bias2."],
                      ["diagnostics"])
        if panels := _alpha_star_panels(self.settings, [k for k in keys if k.startswith("alpha_star")]):
            self.figures["alpha_star"] = predicted_vs_measured(panels)
            sec.figures.append(("alpha_star", "Predicted alpha* (mean ± SEM over seeds, estimated in the cells trained "
                                              "at each alpha) against the measured SW1-optimal alpha (dashed)."))
        return sec

    def problems(self) -> Section:
        table = self.tables["problems"] = problems_table(self.settings, self.sweep_dir)
        if not table.rows:
            return Section("Cells that did not complete", [f"All {self.counts['completed']} cells completed."])
        return Section("Cells that did not complete", tables=["problems"], code=_errors(table))


def build_report(sweep_dir: str | Path) -> Report:
    """Read every record below `sweep_dir` and build the report's tables, figures and sections.
    ValueError names the folder when it does not exist or holds no result.json."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise ValueError(f"sweep folder {sweep_dir} does not exist")
    cells = collect(sweep_dir)
    if not cells:
        raise ValueError(f"no result.json below {sweep_dir}: nothing to report")
    rows = summarise(cells, METRICS)
    settings = group_settings(rows)
    counts = {st: sum(r.count(st) for r in rows) for st in ("completed",) + NOT_COMPLETED}
    parts = _Sections(sweep_dir, settings, counts)
    sections = parts.build()
    return Report(sweep_dir, settings, rows, counts, parts.tables, parts.figures, sections)


# ---------------------------------------------------------------------------------------------------------
# Render
# ---------------------------------------------------------------------------------------------------------

def png_bytes(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def render_markdown(report: Report) -> str:
    """The page as markdown; figure `k` is `report_files/k.png`."""
    out = [f"# Alpha comparison: {report.sweep_dir.name or report.sweep_dir}"]
    for sec in report.sections:
        out.append(f"\n## {sec.title}\n")
        out += [f"{p}\n" for p in sec.text]
        for key in sec.tables:
            t = report.tables[key]
            out.append((f"**{t.title}**\n\n" if t.title != sec.title else "") + f"{t.markdown()}\n")
        out += [f"![{key}]({FILES}/{key}.png)\n\n*{caption}*\n" for key, caption in sec.figures]
        out += [f"{label}:\n\n```\n{text}\n```\n" for label, text in sec.code]
    return "\n".join(out)


CSS = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1400px;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0;font-size:13px}td,th{border:1px solid #ccc;padding:3px 7px;text-align:left}
th{background:#f0f0f0}img{max-width:100%}.note,figcaption{color:#555;font-size:12px}pre{background:#f6f6f6;
padding:.6em;overflow-x:auto;font-size:12px}h3{font-size:14px;margin-bottom:0}"""


def render_html(report: Report, pngs: dict[str, bytes]) -> str:
    """One self-contained page: inline CSS, figures embedded as base64 PNG, no external resources."""
    esc = html.escape
    title = f"Alpha comparison: {report.sweep_dir.name or report.sweep_dir}"
    out = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{esc(title)}</title><style>{CSS}</style>"
           f"</head><body><h1>{esc(title)}</h1>"]
    for sec in report.sections:
        out.append(f"<h2>{esc(sec.title)}</h2>")
        out += [f"<p>{esc(p)}</p>" for p in sec.text]
        for key in sec.tables:
            t = report.tables[key]
            out.append((f"<h3>{esc(t.title)}</h3>" if t.title != sec.title else "") + t.html())
        for key, caption in sec.figures:
            data = base64.b64encode(pngs[key]).decode()
            out.append(f"<figure><img alt='{esc(key)}' src='data:image/png;base64,{data}'>"
                       f"<figcaption>{esc(caption)}</figcaption></figure>")
        out += [f"<p>{esc(label)}:</p><pre>{esc(text)}</pre>" for label, text in sec.code]
    return "\n".join(out + ["</body></html>"])


def report_text(report: Report) -> str:
    """The console summary: counts, the headline table, the SW1 grid and what did not complete."""
    parts = [report.sections[0].text[1], report.tables["headline"].text(), report.tables["sw1_grid"].text()]
    if report.tables["problems"].rows:
        parts.append(report.tables["problems"].text())
    return "\n\n".join(parts)


def write_report(report: Report, sweep_dir: str | Path | None = None) -> dict[str, Path]:
    """Write summary.csv, report.md with report_files/*.png, and report.html into `sweep_dir` (default: the
    report's folder); return their paths. PNGs left in report_files/ by an earlier report are removed."""
    out = Path(sweep_dir) if sweep_dir is not None else report.sweep_dir
    pngs = {key: png_bytes(fig) for key, fig in report.figures.items()}
    files = out / FILES
    for old in files.glob("*.png"):
        if old.stem not in pngs:
            old.unlink()
    for key, data in pngs.items():
        write_bytes_atomic(files / f"{key}.png", data)
    summary = csv_rows(report.rows, METRICS)
    paths = {"summary": write_csv_atomic(out / SUMMARY, summary, list(summary[0])),
             "markdown": write_bytes_atomic(out / MARKDOWN, render_markdown(report).encode()),
             "html": write_bytes_atomic(out / HTML, render_html(report, pngs).encode())}
    return paths | {"files": files}
