"""Figures shared by the W&B runs and the report."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


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
