"""The report's figures (the 2-D sample scatter, shared with the W&B runs, is mfsweep/tasks/sample_figure.py). The report's figures are plain `Figure`s (not pyplot's),
so a notebook can show them, no backend is chosen here (a notebook keeps its inline one; headless entry points
need none for a plain `Figure`), and nothing keeps them alive once dropped.

Every figure is `WIDTH` inches wide, saved by the report at 2x its display resolution, so it fills the page
width crisply. Alpha is always coloured with one sequential, colour-blind-safe colormap over [0, 1] (plasma,
stopped at coral so that every alpha keeps a 3:1 contrast on white), so the alphas read in order."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import matplotlib
import numpy as np
from matplotlib.cm import ScalarMappable
from matplotlib.colors import ListedColormap, Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter

from mfsweep.tasks.sample_figure import scatter_samples

ALPHA_CMAP = ListedColormap(matplotlib.colormaps["plasma"](np.linspace(0.0, 0.63, 256)), name="plasma_to_coral")
ALPHA_NORM = Normalize(0.0, 1.0)
WIDTH = 11.0  # inches: the page's content width at 100 px per inch
FONT = {"title": 11, "label": 10, "tick": 9, "legend": 8.5}


def alpha_color(alpha: float):
    return ALPHA_CMAP(ALPHA_NORM(alpha))


def small_multiples(n: int, ncols: int = 3, aspect: float = 0.72, max_height: float = 4.6) -> tuple[Figure, list]:
    """A `WIDTH`-wide figure of `n` panels, `ncols` to a row; unused axes are removed."""
    ncols = min(n, ncols)
    nrows = math.ceil(n / ncols)
    height = min(WIDTH / ncols * aspect, max_height)
    fig = Figure(figsize=(WIDTH, height * nrows + 0.3), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel().tolist()
    for ax in axes[n:]:
        ax.remove()
    return fig, axes[:n]


def _style(ax, title: str, xlabel: str, ylabel: str) -> None:
    ax.set_title(title, fontsize=FONT["title"])
    ax.set_xlabel(xlabel, fontsize=FONT["label"])
    ax.set_ylabel(ylabel, fontsize=FONT["label"])
    ax.tick_params(which="both", labelsize=FONT["tick"])


def _log_y(ax, values: np.ndarray) -> None:
    """A log y-axis; within one decade, ticks read as plain numbers rather than 1.9 x 10^-1."""
    ax.set_yscale("log")
    if values.max() < 10 * values.min():
        plain = FuncFormatter(lambda v, _: f"{v:.3g}")
        ax.yaxis.set_major_formatter(plain)
        ax.yaxis.set_minor_formatter(plain)


METHOD_MARKERS = ("D", "s", "^", "v", "P", "X")  # schedules and proxies beside a grid, in black outline


@dataclass
class AlphaPanel:
    """One setting's metric against alpha: mean and SEM per alpha (None where no seed completed);
    `complete[i]` is whether every seed of alpha i completed; `best` is marked; `floor` (the metric between
    two reference draws) is drawn as a line when given."""

    title: str
    alphas: list[float]
    means: list[float | None]
    sems: list[float | None]
    complete: list[bool]
    best: float | None = None
    floor: float | None = None
    # other methods beside the grid (a schedule, another proxy): (label, mean alpha, mean, SEM), one marker each
    methods: list[tuple[str, float, float, float | None]] = field(default_factory=list)


def metric_vs_alpha(panels: list[AlphaPanel], ylabel: str, log: bool = False, zero_line: bool = False) -> Figure:
    """Small multiples of a metric against alpha with SEM error bars. Open markers: an alpha with some
    seed not completed; a red x on the axis: an alpha with no completed seed; a star: the best alpha."""
    fig, axes = small_multiples(len(panels))
    method_labels = list(dict.fromkeys(m[0] for p in panels for m in p.methods))
    for ax, p in zip(axes, panels):
        if zero_line:
            ax.axhline(0.0, color="0.35", lw=1, ls="--")
        if p.floor is not None:
            ax.axhline(p.floor, color="0.35", lw=1, ls=":")
        have = [i for i, m in enumerate(p.means) if m is not None]
        x = np.array([p.alphas[i] for i in have])
        y = np.array([p.means[i] for i in have])
        err = np.array([p.sems[i] or 0.0 for i in have])
        ax.plot(x, y, color="0.6", lw=1, zorder=1)
        ax.errorbar(x, y, yerr=err, fmt="none", ecolor="0.3", elinewidth=1.2, capsize=3, zorder=2)
        for i in have:
            color = alpha_color(p.alphas[i])
            ax.plot(p.alphas[i], p.means[i], "o", ms=8, zorder=3, mec=color, mew=1.5,
                    mfc=color if p.complete[i] else "white")
        if p.best is not None and p.means[p.alphas.index(p.best)] is not None:
            ax.plot(p.best, p.means[p.alphas.index(p.best)], "*", ms=18, color="tab:red", mec="white", mew=0.8,
                    zorder=4)
        for a in [a for a, m in zip(p.alphas, p.means) if m is None]:
            ax.plot(a, 0.03, "x", color="tab:red", ms=8, transform=ax.get_xaxis_transform(), clip_on=False)
            ax.text(a, 0.07, "no result", color="tab:red", fontsize=FONT["legend"], ha="center",
                    transform=ax.get_xaxis_transform())
        for label, x_m, y_m, err_m in p.methods:
            ax.errorbar(x_m, y_m, yerr=err_m or 0.0, fmt=METHOD_MARKERS[method_labels.index(label) % len(METHOD_MARKERS)],
                        ms=9, color="black", mfc="white", mew=1.5, capsize=3, zorder=5)
        if log and len(y) and (y > 0).all():
            _log_y(ax, y)
        _style(ax, p.title + (f" (best: alpha = {p.best:g})" if p.best is not None else ""), "alpha", ylabel)
        ax.set_xlim(-0.05, 1.05)
        ax.grid(alpha=0.3, which="both" if log else "major")
    legend = [Line2D([], [], color="0.3", marker="o", mfc="0.5", mec="0.5", lw=1.2, label="mean ± SEM over seeds"),
              Line2D([], [], ls="none", marker="*", ms=12, color="tab:red", label="best alpha")]
    if any(p.floor is not None for p in panels):
        legend.append(Line2D([], [], color="0.35", ls=":", label="noise floor (two reference draws)"))
    if any(not c for p in panels for c in p.complete):
        legend.append(Line2D([], [], ls="none", marker="o", mfc="white", mec="0.3", label="some seed did not complete"))
    legend += [Line2D([], [], ls="none", marker=METHOD_MARKERS[i % len(METHOD_MARKERS)], ms=9, color="black",
                      mfc="white", mew=1.5, label=f"{label} (at its mean alpha)") for i, label in enumerate(method_labels)]
    if method_labels:  # more entries than a panel can hold without covering its data: below the panels
        fig.legend(handles=legend, fontsize=FONT["legend"], loc="outside lower center", ncol=min(len(legend), 4))
    else:
        axes[0].legend(handles=legend, fontsize=FONT["legend"], loc="best", framealpha=0.9)
    return fig


@dataclass
class CurvePanel:
    """One setting's curves against step, one per alpha: `curves[alpha] = (steps, values)`."""

    title: str
    curves: dict[float, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)


def curves_by_alpha(panels: list[CurvePanel], ylabel: str, log: bool = False) -> Figure:
    """Small multiples of per-alpha curves against training step, coloured by alpha, with a colorbar."""
    fig, axes = small_multiples(len(panels))
    for ax, p in zip(axes, panels):
        for alpha, (steps, values) in sorted(p.curves.items()):
            ax.plot(steps, values, color=alpha_color(alpha), lw=1.5, marker="." if len(steps) < 15 else None)
        values = np.concatenate([v[np.isfinite(v)] for _, v in p.curves.values()])
        if log and len(values) and (values > 0).all():
            _log_y(ax, values)
        _style(ax, p.title, "training step", ylabel)
        ax.grid(alpha=0.3)
    bar = fig.colorbar(ScalarMappable(ALPHA_NORM, ALPHA_CMAP), ax=axes, shrink=0.9)
    bar.set_label("alpha", fontsize=FONT["label"])
    bar.ax.tick_params(labelsize=FONT["tick"])
    return fig


@dataclass
class SamplePanel:
    """One cell's final samples, or `note` (its status) when it has none."""

    alpha: float
    generated: np.ndarray | None = None
    reference: np.ndarray | None = None
    note: str = ""


def samples_grid(panels: list[SamplePanel], ncols: int = 4) -> Figure:
    """One setting's final samples, one panel per alpha, `ncols` to a row: generated points in the alpha's
    colour over the reference set's density."""
    fig, axes = small_multiples(len(panels), ncols=ncols, aspect=1.0, max_height=WIDTH / ncols)
    for ax, p in zip(axes, panels):
        if p.generated is not None:
            scatter_samples(p.generated, p.reference, ax=ax, color=alpha_color(p.alpha))
        else:
            ax.set_xticks([])
            ax.set_yticks([])
            ax.text(0.5, 0.5, p.note, ha="center", va="center", fontsize=FONT["label"], color="tab:red",
                    transform=ax.transAxes, wrap=True)
        ax.set_title(f"alpha = {p.alpha:g}" + (f" ({p.note})" if p.generated is not None and p.note else ""),
                     fontsize=FONT["title"], color=alpha_color(p.alpha))
        for spine in ax.spines.values():
            spine.set_color(alpha_color(p.alpha))
            spine.set_linewidth(2)
    return fig


@dataclass
class AlphaStarPanel:
    """One setting's predicted alpha* (per estimator: mean and SEM over seeds at each trained alpha) and
    the measured SW1-optimal alpha."""

    title: str
    alphas: list[float]
    predicted: dict[str, tuple[list[float | None], list[float | None]]]
    measured: float | None


def predicted_vs_measured(panels: list[AlphaStarPanel]) -> Figure:
    """Predicted alpha* (docs/method.md 4), estimated in the cells trained at each alpha, against the measured
    SW1-optimal alpha (a horizontal line)."""
    fig, axes = small_multiples(len(panels))
    markers = "osd^v"
    for ax, p in zip(axes, panels):
        for k, (key, (means, sems)) in enumerate(p.predicted.items()):
            have = [i for i, m in enumerate(means) if m is not None]
            ax.errorbar([p.alphas[i] for i in have], [means[i] for i in have], yerr=[sems[i] or 0.0 for i in have],
                        marker=markers[k % len(markers)], ms=6, lw=1.2, capsize=3, label=f"predicted {key}")
        if p.measured is not None:
            ax.axhline(p.measured, color="tab:red", ls="--", lw=1.5, label=f"measured SW1-optimal = {p.measured:g}")
        ax.plot([0, 1], [0, 1], color="0.7", lw=0.8, ls=":")
        ax.set_xlim(-0.05, 1.05)
        ax.set_ylim(-0.05, 1.05)
        _style(ax, p.title, "alpha the cell was trained at", "alpha*")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=FONT["legend"], loc="best", framealpha=0.9)
    return fig
