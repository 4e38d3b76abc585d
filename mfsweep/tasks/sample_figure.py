"""The samples figure of a cell's W&B run (drawn by tasks/tracking.py): a scatter of 2-D samples over the
reference density, or an image grid. The report's sample panels (report/plots.py) draw the same scatter.
Plain `Figure`s, never pyplot's: nothing keeps them alive once dropped."""
from __future__ import annotations

import math
from typing import Any

import numpy as np
from matplotlib.figure import Figure


def tile(images: np.ndarray, ncols: int | None = None, pad: int = 1) -> np.ndarray:
    """uint8 images `(N, H, W, 3)` -> one `(rows (H + pad) - pad, cols (W + pad) - pad, 3)` mosaic, row by row,
    white between tiles and in unused cells."""
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"images: expected uint8 (N, H, W, 3), got {images.dtype} {images.shape}")
    n, h, w, _ = images.shape
    ncols = ncols or max(1, math.ceil(math.sqrt(n)))
    nrows = max(1, math.ceil(n / ncols))
    out = np.full((nrows * (h + pad) - pad, ncols * (w + pad) - pad, 3), 255, np.uint8)
    for i, image in enumerate(images):
        r, c = divmod(i, ncols)
        out[r * (h + pad): r * (h + pad) + h, c * (w + pad): c * (w + pad) + w] = image
    return out


def image_grid(images: np.ndarray, title: str = "", ncols: int | None = None) -> Figure:
    """A figure of the images in a near-square grid, pixels unsmoothed."""
    mosaic = tile(images, ncols)
    fig = Figure(figsize=(4, 4 * mosaic.shape[0] / mosaic.shape[1] + 0.3), layout="constrained")
    ax = fig.add_subplot()
    ax.imshow(mosaic, interpolation="nearest")
    ax.set_title(title, fontsize=8)
    ax.set_axis_off()
    return fig


def scatter_samples(generated: np.ndarray, reference: np.ndarray | None = None, title: str = "", ax=None,
                    color="tab:blue"):
    """Generated 2-D samples (first two coordinates) as small translucent points over the reference set's
    density (grey), on equal axes; a new `Figure` when no `ax` is given."""
    own = ax is None
    if own:
        ax = Figure(figsize=(4, 4), layout="constrained").subplots()
    lim = None
    if reference is not None:
        lo, hi = np.percentile(reference[:, :2], [0.5, 99.5], axis=0)
        pad = 0.15 * (hi - lo)
        lim = (lo - pad, hi + pad)
        density, xe, ye = np.histogram2d(reference[:, 0], reference[:, 1], bins=60,
                                         range=[[lim[0][0], lim[1][0]], [lim[0][1], lim[1][1]]])
        ax.imshow(density.T, origin="lower", extent=(xe[0], xe[-1], ye[0], ye[-1]), cmap="Greys",
                  vmax=np.percentile(density[density > 0], 95) * 1.6, aspect="auto", interpolation="bilinear")
    ax.scatter(generated[:, 0], generated[:, 1], s=2, color=color, alpha=0.35, linewidths=0, rasterized=True)
    ax.set_title(title, fontsize=10)  # the report's label size (report/plots.py FONT)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    if lim is not None:
        ax.set_xlim(lim[0][0], lim[1][0])
        ax.set_ylim(lim[0][1], lim[1][1])
    return ax.figure if own else ax


def sample_figure(arrays: dict[str, Any], title: str) -> Figure | None:
    """A cell's samples (`samples.npz`'s arrays) as one figure: a scatter of up to 5,000 2-D samples, or a grid
    of up to 64 images; None for other shapes."""
    gen, ref = arrays.get("generated"), arrays.get("reference")
    if gen is not None and gen.ndim == 2 and gen.shape[1] >= 2:
        return scatter_samples(gen[:5000], None if ref is None else ref[:5000], title=title)
    if gen is not None and gen.ndim == 4:
        return image_grid(gen[:64], title=title)
    return None
