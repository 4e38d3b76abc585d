"""The alpha-comparison report of a sweep folder: gather the records (aggregate) -> verdicts (verdict) ->
tables and figures (table, plots) -> one self-contained HTML page and a markdown page with PNG files.

    report = build_report("multirun/2026-11-23/10-00-00")   # tables: Table (plain rows); figures: Figure
    report.verdicts[0].sentence()                            # the answer, one sentence per setting
    report.matched["swiss_roll"].steps                       # the same answer at every checkpoint
    report.compared[0].sentence()                            # a schedule or proxy against the grid beside it
    report.tables["sw1_grid"].rows[0]["alpha = 0.5"]["mean"]
    write_report(report)                                     # report.html, report.md, report_files/, summary.csv

The page opens with the verdicts and the paired-difference plot, then the detail. Sections that need data
the sweep does not have (noise floors, checkpoints, gradient variance, FID, diagnostics, 2-D samples) are left
out; cells that did not complete are shown in every table and listed with their errors.
"""
from __future__ import annotations

import base64
import html
import io
import os
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from mfsweep.report.aggregate import (
    NOT_COMPLETED, UNREADABLE_FILE, Row, Setting, add_floor_excess, best_alpha, collect, diagnostic_keys,
    group_settings, loss_settings, mean_floor, mean_history, paired_difference, read_history, alpha_rows,
    unreadable_file,
)
from mfsweep.atomic import write_bytes_atomic, write_csv_atomic, write_json_atomic
from mfsweep.report.compare import MethodResult, compare_methods
from mfsweep.report.evaluation import check_alike, use_evaluation
from mfsweep.report.plots import (
    AlphaPanel, AlphaStarPanel, CurvePanel, SamplePanel, curves_by_alpha, metric_vs_alpha, predicted_vs_measured,
    samples_grid,
)
from mfsweep.sweep.plan import read_plan
from mfsweep.sweep.provenance import provenance_differences
from mfsweep.sweep.race import race_lines, race_looks
from mfsweep.sweep.record import SAMPLES
from mfsweep.sweep.states import planned_cells
from mfsweep.report.table import (
    TERMINAL, Table, csv_rows, diagnostics_table, grid_table, headline_table, matched_table, methods_steps_table,
    methods_table, problems_table, settings_table, steps_table, verdict_table,
)
from mfsweep.report.verdict import (
    CONFIDENCE, StepVerdict, Verdict, checkpoint_key, matched_steps, setting_histories, stability, verdict,
)

METRICS = ("sw1", "sw2", "fid", "grad_var", "sw1_excess", "sw2_excess")
HTML, MARKDOWN, FILES, SUMMARY = "report.html", "report.md", "report_files", "summary.csv"
VERDICT = "verdict.json"  # one answer per setting, machine-readable (docs/method.md 7)
SCATTER_POINTS = 4000  # per panel: enough to see the shape, small enough to keep the page light
DPI = 200  # twice the 100 px per inch the page displays figures at: crisp on high-density screens


@dataclass
class Section:
    """A part of the page: paragraphs, then tables and figures (by key in the report), then code blocks."""

    title: str
    text: list[str] = field(default_factory=list)
    tables: list[str] = field(default_factory=list)
    figures: list[tuple[str, str]] = field(default_factory=list)  # (figure key, caption)
    code: list[tuple[str, str]] = field(default_factory=list)  # (label, preformatted text)


@dataclass
class Matched:
    """One setting's verdict at each checkpoint of `key` (eval/sw1, or eval/fid for the DiT)."""

    key: str
    steps: list[StepVerdict]
    stability: str


@dataclass
class Report:
    sweep_dir: Path
    settings: list[Setting]
    rows: list[Row]
    counts: dict[str, int]  # cells per status, `missing` included
    tables: dict[str, Table]
    figures: dict[str, Figure]
    sections: list[Section]
    verdicts: list[Verdict]
    matched: dict[str, Matched]  # by setting label; settings without checkpoints are absent
    compared: list[MethodResult] = field(default_factory=list)  # schedules and proxies against their grid


REPOSITORY = Path(__file__).resolve().parents[2]


def resolve_sweep_dir(path: str | Path) -> Path:
    """A sweep folder named by the user: an absolute path as is; a relative one from the working folder when it
    is there, else from the repository root (a notebook's kernel runs in notebooks/, `make demo` writes demo/)."""
    path = Path(path).expanduser()
    if path.is_absolute() or path.exists():
        return path
    return REPOSITORY / path


def shown_path(path: Path) -> str:
    """`path` relative to the working folder when it lies below it, else as given: pages and prints stay
    readable and do not leak the machine's layout."""
    here = Path.cwd().resolve()
    full = path.resolve()
    return os.path.relpath(full, here) if full.is_relative_to(here) else str(path)


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
                try:
                    with np.load(path) as z:
                        gen = z["generated"][:SCATTER_POINTS]
                        ref = z["reference"][:SCATTER_POINTS] if "reference" in z else None
                except UNREADABLE_FILE as exc:
                    unreadable_file(path, exc)
                    continue
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
                       [r.complete for r in s.rows], best_alpha(s, metric), mean_floor(s, metric)) for s in settings]


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


def _folder(setting: Setting, root: Path) -> str | None:
    """The setting's folder relative to `root` (plan.json's name for it), None when its cells are elsewhere."""
    folders = {c.path.parent for c in setting.cells()}
    folder = folders.pop() if len(folders) == 1 else None
    return str(folder.relative_to(root)) if folder is not None and folder.is_relative_to(root) else None


class _Sections:
    """One method per section of the page, in page order: each adds its tables and figures and returns the
    section, or None when the sweep has no data for it."""

    ORDER = ("verdict", "sweep", "race", "headline", "methods", "sw1", "checkpoints", "grad_var", "fid", "samples", "curves",
             "diagnostics", "problems")

    def __init__(self, sweep_dir: Path, settings: list[Setting], counts: dict[str, int], more: list[Path] = (),
                 race: dict | None = None):
        self.sweep_dir, self.settings, self.counts, self.more = sweep_dir, settings, counts, list(more)
        self.race_state = race
        self.tables: dict[str, Table] = {}
        self.figures: dict[str, Figure] = {}
        self.histories = _histories(settings)
        self.verdicts = [verdict(s, looks=race_looks(race, _folder(s, sweep_dir))) for s in settings]
        self.compared = compare_methods(settings, read_history)
        self.warnings = provenance_warnings(settings)
        self.matched: dict[str, Matched] = {}
        for s in (s for s in settings if len(s.rows) > 1):  # one alpha: no verdict to follow over training
            by_alpha = setting_histories(s, read_history)
            if (key := checkpoint_key(by_alpha)) and (steps := matched_steps(s, by_alpha, key)):
                self.matched[s.label] = Matched(key, steps, stability(steps))

    def build(self) -> list[Section]:
        return [sec for name in self.ORDER if (sec := getattr(self, name)()) is not None]

    def verdict(self) -> Section:
        self.tables["verdict"] = verdict_table(self.verdicts)
        compared: dict[str, list[str]] = {}
        for m in self.compared:  # a method beside a grid: said against the grid, not as a setting on its own
            compared.setdefault(m.setting.label, []).append(m.sentence())
        text = []
        for v in self.verdicts:
            text += compared.get(v.setting) or ([v.answer.sentence()] if v.answer else []) + [
                ("Unadjusted, as in the paper: " if v.answer else "") + v.sentence() + (
                    f" At matched steps ({self.matched[v.setting].key}): {self.matched[v.setting].stability}."
                    if v.setting in self.matched else "")]
        sec = Section("Verdict", text + self.warnings)
        # The paired plot of each setting's verdict metric: SW1, or FID for a DiT sweep (one figure per metric).
        for metric in dict.fromkeys(v.metric for v in self.verdicts):
            judged = [s for s, v in zip(self.settings, self.verdicts) if v.metric == metric]
            if panels := _paired_panels(judged, metric):
                m, key = metric.upper(), f"{metric}_paired"
                self.figures[key] = metric_vs_alpha(panels, f"{m} minus {m} at alpha = 0\n(lower is better)",
                                                    zero_line=True)
                sec.figures.append((key, f"{m} minus {m} at alpha = 0 of the same seed, mean ± SEM over the seeds "
                                         "completed at both: the seed-to-seed spread cancels. Below the dashed line "
                                         "an alpha beats vanilla MeanFlow."))
        return sec

    def race(self) -> Section | None:
        """A race's rounds (sweep.until=resolved): per setting its answer, seeds per alpha, dropped alphas, cost."""
        if not self.race_state:
            return None
        return Section("Race", ["Rounds of new seeds until each setting's answer was resolved (sweep.until=resolved): "
                                "the rounds, seeds per alpha, the alphas dropped as worse than the best, and the "
                                "cells trained against fixed grids."],
                       code=[("race", "\n".join(race_lines(self.race_state, planned_cells(self.sweep_dir))))])

    def sweep(self) -> Section:
        n = len(self.settings)
        self.tables["settings"] = settings_table(self.settings, [loss_settings(s) for s in self.settings])
        folders = ", ".join(shown_path(p) for p in [self.sweep_dir, *self.more])
        return Section("Sweep", [f"Folder{'s' * bool(self.more)}: {folders}",
                                 f"{sum(self.counts.values())} cells: "
                                 + ", ".join(f"{k} {st}" for st, k in self.counts.items())
                                 + f" ({n} setting{'s' * (n > 1)})."], ["settings"])

    def headline(self) -> Section:
        quality = [m for m in ("sw1", "sw2", "fid") if _present(self.settings, m)] or ["sw1"]
        floors = {(s.label, m): mean_floor(s, m) for s in self.settings for m in quality}
        methods = {id(m.setting) for m in self.compared}  # these have their own table, against their grid
        judged = [s for s in self.settings if id(s) not in methods] or self.settings
        self.tables["headline"] = headline_table(judged, tuple(quality), floors)
        return Section("Best alpha against alpha = 0", tables=["headline"])

    def methods(self) -> Section | None:
        if not self.compared:
            return None
        self.tables["methods"] = methods_table(self.compared)
        sec = Section("Schedules and proxies against the grid", [
            "Each setting that differs from a constant-alpha grid only in its alpha schedule or its proxy, compared "
            "seed by seed with the grid's alpha = 0 (vanilla MeanFlow) and with its best constant alpha. Methods: "
            + "; ".join(dict.fromkeys(f"{m.method}: {m.spec}" for m in self.compared)) + "."], ["methods"])
        if steps := methods_steps_table(self.compared, "eval/sw1"):
            self.tables["methods_steps"] = steps
            sec.tables.append("methods_steps")
        panels = []
        for grid in {id(m.grid): m.grid for m in self.compared}.values():
            (panel,) = _paired_panels([grid], self.compared[0].metric)
            panel.title = next(m.base for m in self.compared if m.grid is grid)
            panel.methods = [(m.method, m.mean_alpha if m.mean_alpha is not None else 0.5, m.vs_zero.mean,
                              m.vs_zero.sem) for m in self.compared if m.grid is grid and m.vs_zero.mean is not None]
            panels.append(panel)
        m = self.compared[0].metric.upper()
        self.figures["methods_paired"] = metric_vs_alpha(panels, f"{m} minus {m} at alpha = 0\n(lower is better)",
                                                         zero_line=True)
        sec.figures.append(("methods_paired", "The grid's paired differences to alpha = 0 (coloured, as above) with "
                                              "each schedule or proxy (black outline) at its mean alpha, paired with "
                                              "the grid's alpha = 0 over the same seeds."))
        return sec

    def sw1(self) -> Section:
        self.tables["sw1_grid"] = grid_table(self.settings, "sw1", "SW1 by setting and alpha (mean ± SEM)")
        self.figures["sw1_vs_alpha"] = metric_vs_alpha(_alpha_panels(self.settings, "sw1"), "SW1 (lower is better)")
        sec = Section("SW1 against alpha", tables=["sw1_grid"], figures=[(
            "sw1_vs_alpha", "SW1 against alpha, mean ± SEM over completed seeds (the seed-to-seed spread, which "
            "the paired plot above removes). Open marker: some seed did not complete; red x on the axis: no seed "
            "completed; star: best alpha; dotted: the noise floor.")])
        if _present(self.settings, "sw1_excess"):
            self.tables["sw1_excess_grid"] = grid_table(
                self.settings, "sw1_excess", "SW1 minus its noise floor by setting and alpha (mean ± SEM)")
            sec.tables.append("sw1_excess_grid")
            sec.text.append("The noise floor is SW1 between two independent reference draws of the evaluation's "
                            "size, with the evaluation's projections (metrics.sw1_floor): what a perfect generator "
                            "would score. The excess over it is what training can still remove.")
        return sec

    def checkpoints(self) -> Section | None:
        if not self.matched:
            return None
        sec = Section("Verdict at matched steps", [
            f"{label}: {m.stability}." for label, m in self.matched.items()])
        for label, m in self.matched.items():
            key = f"matched_{len(sec.tables)}"
            self.tables[key] = matched_table(label, m.key, m.steps)
            sec.tables.append(key)
        if curves := _curves(self.settings, self.histories, "eval/sw1"):
            self.figures["sw1_vs_step"] = curves_by_alpha([CurvePanel(k, v) for k, v in curves.items()],
                                                          "SW1 at checkpoint (lower is better)")
            sec.figures.append(("sw1_vs_step", "eval/sw1 at each checkpoint (fewer points and directions than the "
                                               "final evaluation), mean over completed seeds, coloured by alpha."))
        return sec

    def grad_var(self) -> Section | None:
        if not _present(self.settings, "grad_var"):
            return None
        self.tables["grad_var_grid"] = grid_table(self.settings, "grad_var",
                                                  "Gradient variance by setting and alpha (mean ± SEM)")
        self.figures["grad_var_vs_alpha"] = metric_vs_alpha(_alpha_panels(self.settings, "grad_var"),
                                                            "gradient variance (log scale)", log=True)
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
            self.figures["fid_vs_step"] = curves_by_alpha([CurvePanel(k, v) for k, v in curves.items()],
                                                          "FID (lower is better)")
            sec.tables.append("fid_steps")
            sec.figures.append(("fid_vs_step", "FID at each checkpoint, mean over completed seeds, coloured by alpha."))
        return sec if sec.tables else None

    def samples(self) -> Section | None:
        flat = [s for s in self.settings if s.keys["dim"] == 2]
        if not flat:
            return None
        sec = Section("Final samples")
        for i, s in enumerate(flat):
            self.figures[f"samples_{i}"] = samples_grid(_samples(s))
            sec.figures.append((f"samples_{i}", (
                f"{s.label}: generated samples (coloured by alpha, first {SCATTER_POINTS} points of each cell's "
                "samples.npz) over the reference set's density (grey); lowest completed seed (named when it is not "
                "the grid's lowest).")))
        return sec

    def curves(self) -> Section | None:
        sec = Section("Training curves")
        notes = {"train/loss_mse": " Not comparable across alpha: the regression target's tangent changes with "
                                   "alpha, so a lower loss at a higher alpha means a lower-variance target, not a "
                                   "better model; compare alphas by SW1 above.",
                 "diag/grad_var": ""}
        for key, name, log in (("train/loss_mse", "loss_curves", False), ("diag/grad_var", "grad_var_curves", True)):
            if by_setting := _curves(self.settings, self.histories, key):
                self.figures[name] = curves_by_alpha([CurvePanel(k, v) for k, v in by_setting.items()],
                                                     key + (" (log scale)" if log else ""), log=log)
                sec.figures.append((name, f"{key} from history.csv, mean over the completed seeds of each alpha."
                                          + notes[key]))
        scheduled = [s for s in self.settings if any(r.grid_alpha is None for r in s.rows)]
        if by_setting := _curves(scheduled, self.histories, "train/alpha"):
            self.figures["alpha_curves"] = curves_by_alpha([CurvePanel(k, v) for k, v in by_setting.items()],
                                                           "train/alpha")
            sec.figures.append(("alpha_curves", "alpha along training under each schedule (train/alpha from "
                                                "history.csv), mean over the completed seeds, coloured by its mean."))
        return sec if sec.figures else None

    def diagnostics(self) -> Section | None:
        if not (keys := diagnostic_keys([c for s in self.settings for c in s.cells()])):
            return None
        self.tables["diagnostics"] = diagnostics_table(self.settings, keys)
        sec = Section("Diagnostics", ["Measured in each cell (docs/method.md 4): predicted alpha*, kappa, sigma2, "
                                      "bias2."], ["diagnostics"])
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


def build_report(sweep_dir: str | Path, *more: str | Path, evaluation: str | None = None) -> Report:
    """Read every record below `sweep_dir` (and the `more` folders reported with it, e.g. a schedule's sweep
    beside the grid's) and build the report's verdicts, tables, figures and sections; the report belongs to
    `sweep_dir`. `evaluation` names the cells' re-evaluation to report (`evaluations/NAME.json`) in place of
    their records' own. ValueError names a folder that does not exist or holds no result.json, or cells
    evaluated differently."""
    folders = [Path(d) for d in (sweep_dir, *more)]
    cells = []
    for folder in folders:
        if not folder.is_dir():
            raise ValueError(f"sweep folder {folder} does not exist")
        found = collect(folder)
        if not found:
            raise ValueError(f"no result.json below {folder}: nothing to report")
        use_evaluation(found, evaluation)
        cells += found
    check_alike(cells, folders[0])
    sweep_dir = folders[0]
    add_floor_excess(cells)
    plans = [read_plan(f) or {} for f in folders]
    rows = alpha_rows(cells, METRICS, raced=any(p.get("race") for p in plans))
    settings = group_settings(rows)
    counts = {st: sum(r.count(st) for r in rows) for st in ("completed",) + NOT_COMPLETED}
    parts = _Sections(sweep_dir, settings, counts, folders[1:], plans[0].get("race"))
    sections = parts.build()
    return Report(sweep_dir, settings, rows, counts, parts.tables, parts.figures, sections, parts.verdicts,
                  parts.matched, parts.compared)


# ---------------------------------------------------------------------------------------------------------
# Render
# ---------------------------------------------------------------------------------------------------------

def png_bytes(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def _md(text: str) -> str:
    """Text for markdown: `*` and `_` (as in alpha*, sw1_floor) escaped so they never open emphasis."""
    return text.replace("\\", "\\\\").replace("*", "\\*").replace("_", "\\_")


def render_markdown(report: Report) -> str:
    """The page as markdown; figure `k` is `report_files/k.png`."""
    out = [f"# Alpha comparison: {report.sweep_dir.name or report.sweep_dir}"]
    for sec in report.sections:
        out.append(f"\n## {sec.title}\n")
        out += [f"{_md(p)}\n" for p in sec.text]
        out += [f"![{key}]({FILES}/{key}.png)\n\n*{_md(caption)}*\n" for key, caption in sec.figures]
        for key in sec.tables:
            t = report.tables[key]
            out.append((f"**{_md(t.title)}**\n\n" if t.title != sec.title else "") + f"{t.markdown()}\n")
        out += [f"{label}:\n\n```\n{text}\n```\n" for label, text in sec.code]
    return "\n".join(out)


CSS = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;padding:0 1em;color:#222;
line-height:1.45}table{border-collapse:collapse;margin:.5em 0;font-size:13px;font-variant-numeric:tabular-nums}
td,th{border:1px solid #ccc;padding:3px 7px;text-align:left}th{background:#f0f0f0}.wide{overflow-x:auto}
img{max-width:100%;height:auto}figure{margin:1em 0}.note,figcaption{color:#444;font-size:13px}
.verdict{font-size:16px;background:#f4f7fb;border-left:4px solid #2c5d9c;padding:.5em 1em;margin:.6em 0}
pre{background:#f6f6f6;padding:.6em;overflow-x:auto;font-size:12px}h3{font-size:14px;margin-bottom:0}"""


def render_html(report: Report, pngs: dict[str, bytes]) -> str:
    """One self-contained page: inline CSS, figures embedded as base64 PNG at half their pixel size (2x for
    high-density screens), no external resources."""
    esc = html.escape
    title = f"Alpha comparison: {report.sweep_dir.name or report.sweep_dir}"
    out = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{esc(title)}</title>"
           f"<style>{CSS}</style></head><body><h1>{esc(title)}</h1>"]
    for sec in report.sections:
        out.append(f"<h2>{esc(sec.title)}</h2>")
        css = " class='verdict'" if sec.title == "Verdict" else ""
        out += [f"<p{css}>{esc(p)}</p>" for p in sec.text]
        for key, caption in sec.figures:
            width = round(report.figures[key].get_size_inches()[0] * DPI / 2)
            data = base64.b64encode(pngs[key]).decode()
            out.append(f"<figure><img alt='{esc(key)}' width='{width}' src='data:image/png;base64,{data}'>"
                       f"<figcaption>{esc(caption)}</figcaption></figure>")
        for key in sec.tables:
            t = report.tables[key]
            out.append((f"<h3>{esc(t.title)}</h3>" if t.title != sec.title else "")
                       + f"<div class='wide'>{t.html()}</div>")
        out += [f"<p>{esc(label)}:</p><pre>{esc(text)}</pre>" for label, text in sec.code]
    return "\n".join(out + ["</body></html>"])


def provenance_warnings(settings: list[Setting]) -> list[str]:
    """One line per setting whose records were not all made by the same code and config: its comparison may
    mix versions."""
    out = []
    for s in settings:
        differences = provenance_differences([c.record for c in s.cells()])
        if differences:
            out.append(f"Warning: {s.label}: its records differ in " + "; ".join(differences)
                       + ", so its alphas may not compare like with like.")
    return out


def report_text(report: Report, width: int = TERMINAL) -> str:
    """The console summary within `width` columns: counts, the verdict per setting, the headline table and
    what did not complete (the SW1 grid, 11 alphas wide, is in the pages)."""
    counts = report.sections[1].text[1]
    parts = [textwrap.fill(f"Sweep {shown_path(report.sweep_dir)}: {counts}", width),
             f"Verdict (paired over seeds; the answer from simultaneous {CONFIDENCE:.0%} intervals):"]
    for line in report.sections[0].text:  # the page's verdict sentences, then its warnings
        parts[-1] += "\n" + textwrap.fill(line, width, initial_indent="- ", subsequent_indent="  ")
    parts += [code for sec in report.sections if sec.title == "Race" for _, code in sec.code]
    parts.append(report.tables["headline"].text(width))
    if "methods" in report.tables:
        parts.append(report.tables["methods"].text(width))
    if report.tables["problems"].rows:
        parts.append(report.tables["problems"].text(width))
    return "\n\n".join(parts)


def verdict_json(report: Report) -> dict:
    """verdict.json: `{"settings": [...]}`, one `Answer.to_dict()` per setting with an alpha = 0 to compare
    against (setting, metric, answer, best alpha, seeds per alpha, rounds, intervals, sentence)."""
    return {"settings": [v.answer.to_dict() for v in report.verdicts if v.answer]}


def write_report(report: Report, sweep_dir: str | Path | None = None) -> dict[str, Path]:
    """Write summary.csv, verdict.json, report.md with report_files/*.png, and report.html into `sweep_dir`
    (default: the report's folder); return their paths. PNGs left in report_files/ by an earlier report are
    removed."""
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
             "verdict": write_json_atomic(out / VERDICT, verdict_json(report)),
             "markdown": write_bytes_atomic(out / MARKDOWN, render_markdown(report).encode()),
             "html": write_bytes_atomic(out / HTML, render_html(report, pngs).encode())}
    return paths | {"files": files}
