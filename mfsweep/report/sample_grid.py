"""An image-grid figure of generated samples (the image counterpart of `plots.scatter_samples`), for the
per-cell W&B run of the latent DiT task."""
from __future__ import annotations

import math

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
