"""Figures shared by the W&B runs and the report. The report's figures are plain `Figure`s (not pyplot's),
so a notebook can show them and nothing keeps them alive once dropped. Alpha is always coloured with one
sequential colormap over [0, 1], so the alphas read in order."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.cm import ScalarMappable  # noqa: E402
from matplotlib.colors import Normalize  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

ALPHA_CMAP = "viridis"
ALPHA_NORM = Normalize(0.0, 1.0)


def alpha_color(alpha: float):
    return matplotlib.colormaps[ALPHA_CMAP](ALPHA_NORM(alpha))


def scatter_samples(generated: np.ndarray, reference: np.ndarray | None = None, title: str = "", ax=None):
    """Generated 2-D samples (first two coordinates) over the reference set, on equal axes."""
    own = ax is None
    if own:
        fig, ax = plt.subplots(figsize=(3.2, 3.2))
    if reference is not None:
        ax.scatter(reference[:, 0], reference[:, 1], s=1, c="0.8", linewidths=0, rasterized=True)
    ax.scatter(generated[:, 0], generated[:, 1], s=1, c="tab:blue", linewidths=0, rasterized=True)
    ax.set_title(title, fontsize=8)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    if reference is not None:
        lo, hi = np.percentile(reference, [0.5, 99.5], axis=0)
        pad = 0.15 * (hi - lo)
        ax.set_xlim(lo[0] - pad[0], hi[0] + pad[0])
        ax.set_ylim(lo[1] - pad[1], hi[1] + pad[1])
    return ax.figure if own else ax


def small_multiples(n: int, panel: tuple[float, float] = (3.6, 2.8), ncols: int = 3) -> tuple[Figure, list]:
    """A figure of `n` panels, `ncols` to a row; unused axes are removed."""
    ncols = min(n, ncols)
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(panel[0] * ncols, panel[1] * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel().tolist()
    for ax in axes[n:]:
        ax.remove()
    return fig, axes[:n]


def _log_y(ax, values: np.ndarray) -> None:
    """A log y-axis; within one decade, ticks read as plain numbers rather than 1.9 x 10^-1."""
    ax.set_yscale("log")
    if values.max() < 10 * values.min():
        plain = FuncFormatter(lambda v, _: f"{v:.3g}")
        ax.yaxis.set_major_formatter(plain)
        ax.yaxis.set_minor_formatter(plain)


@dataclass
class AlphaPanel:
    """One setting's metric against alpha: mean and SEM per alpha (None where no seed completed);
    `complete[i]` is whether every seed of alpha i completed; `best` is marked."""

    title: str
    alphas: list[float]
    means: list[float | None]
    sems: list[float | None]
    complete: list[bool]
    best: float | None = None


def metric_vs_alpha(panels: list[AlphaPanel], ylabel: str, log: bool = False, zero_line: bool = False) -> Figure:
    """Small multiples of a metric against alpha with SEM error bars. Open markers: an alpha with some
    seed not completed; a red x on the axis: an alpha with no completed seed; a star: the best alpha."""
    fig, axes = small_multiples(len(panels))
    for ax, p in zip(axes, panels):
        if zero_line:
            ax.axhline(0.0, color="0.4", lw=0.8, ls="--")
        have = [i for i, m in enumerate(p.means) if m is not None]
        x = np.array([p.alphas[i] for i in have])
        y = np.array([p.means[i] for i in have])
        err = np.array([p.sems[i] or 0.0 for i in have])
        ax.plot(x, y, color="0.6", lw=1, zorder=1)
        ax.errorbar(x, y, yerr=err, fmt="none", ecolor="0.3", elinewidth=1, capsize=2, zorder=2)
        for i in have:
            color = alpha_color(p.alphas[i])
            ax.plot(p.alphas[i], p.means[i], "o", ms=6, zorder=3, mec=color, mew=1.2,
                    mfc=color if p.complete[i] else "white")
        if p.best is not None and p.means[p.alphas.index(p.best)] is not None:
            ax.plot(p.best, p.means[p.alphas.index(p.best)], "*", ms=14, color="tab:red", zorder=4)
        none = [a for a, m in zip(p.alphas, p.means) if m is None]
        for a in none:
            ax.plot(a, 0.03, "x", color="tab:red", ms=6, transform=ax.get_xaxis_transform(), clip_on=False)
            ax.text(a, 0.07, "no result", color="tab:red", fontsize=6, ha="center", transform=ax.get_xaxis_transform())
        if log and len(y) and (y > 0).all():
            _log_y(ax, y)
        ax.set_title(p.title + (f" (lowest: alpha = {p.best:g})" if p.best is not None else ""), fontsize=9)
        ax.set_xlabel("alpha", fontsize=8)
        ax.set_ylabel(ylabel, fontsize=8)
        ax.set_xlim(-0.05, 1.05)
        ax.tick_params(which="both", labelsize=7)
        ax.grid(alpha=0.3, which="both" if log else "major")
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
            ax.plot(steps, values, color=alpha_color(alpha), lw=1.2, marker="." if len(steps) < 15 else None)
        values = np.concatenate([v[np.isfinite(v)] for _, v in p.curves.values()])
        if log and len(values) and (values > 0).all():
            _log_y(ax, values)
        ax.set_title(p.title, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.set_ylabel(ylabel, fontsize=8)
        ax.tick_params(which="both", labelsize=7)
        ax.grid(alpha=0.3)
    fig.colorbar(ScalarMappable(ALPHA_NORM, ALPHA_CMAP), ax=axes, label="alpha", shrink=0.9)
    return fig


@dataclass
class SamplePanel:
    """One cell's final samples, or `note` (its status) when it has none."""

    alpha: float
    generated: np.ndarray | None = None
    reference: np.ndarray | None = None
    note: str = ""


def samples_grid(rows: list[tuple[str, list[SamplePanel]]]) -> Figure:
    """Final samples over the reference set: one row per setting, one column per alpha."""
    ncols = max(len(panels) for _, panels in rows)
    fig = Figure(figsize=(1.45 * ncols + 0.4, 1.55 * len(rows)), layout="constrained")
    axes = fig.subplots(len(rows), ncols, squeeze=False)
    for i, (label, panels) in enumerate(rows):
        for j, ax in enumerate(axes[i]):
            if j >= len(panels):
                ax.remove()
                continue
            p = panels[j]
            if p.generated is not None:
                scatter_samples(p.generated, p.reference, ax=ax)
            else:
                ax.set_xticks([])
                ax.set_yticks([])
                ax.text(0.5, 0.5, p.note, ha="center", va="center", fontsize=7, color="tab:red",
                        transform=ax.transAxes, wrap=True)
            ax.set_title(f"alpha = {p.alpha:g}" + (f"\n{p.note}" if p.generated is not None and p.note else ""),
                         fontsize=7, color=alpha_color(p.alpha) if p.alpha < 0.85 else "0.2")
            for spine in ax.spines.values():
                spine.set_color(alpha_color(p.alpha))
                spine.set_linewidth(1.5)
        axes[i][0].set_ylabel(label, fontsize=8)
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
                        marker=markers[k % len(markers)], ms=4, lw=1, capsize=2, label=f"predicted {key}")
        if p.measured is not None:
            ax.axhline(p.measured, color="tab:red", ls="--", lw=1.2, label=f"measured SW1-optimal = {p.measured:g}")
        ax.plot([0, 1], [0, 1], color="0.7", lw=0.8, ls=":")
        ax.set_xlim(-0.05, 1.05)
        ax.set_ylim(-0.05, 1.05)
        ax.set_title(p.title, fontsize=9)
        ax.set_xlabel("alpha the cell was trained at", fontsize=8)
        ax.set_ylabel("alpha*", fontsize=8)
        ax.tick_params(which="both", labelsize=7)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6.5, loc="best", frameon=False)
    return fig
