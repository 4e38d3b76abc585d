"""Frechet distance between generated and reference images in a feature space (FID, docs/method.md 5).

A thin layer on torchmetrics' `FrechetInceptionDistance`: it adds a reference set whose statistics are
computed once and cached on disk, and a fixed image convention. Two feature networks:
- Inception-v3 from torch-fidelity's local weights file `weights-inception-2015-12-05-6726825d.pth`
  (config key `metrics.fid.inception_weights`); nothing is ever downloaded;
- any `nn.Module` mapping images `(N, 3, H, W)` to features `(N, F)` (the CPU demo uses a small one).

Images are float tensors `(N, 3, H, W)` in [0, 1] (a VAE's [-1, 1] output maps as `(x + 1) / 2`).
Inception receives them quantised to uint8 by rounding (`round(255 x)`; torchmetrics' own `normalize`
truncates) and resizes them to 299 x 299 itself; a custom network receives the floats unchanged.

The reference side's feature sums are torchmetrics' (and the cache's); the generated side's are kept here, in
K blocks, so that one pass gives FID and its delete-a-block jackknife standard error over the generated
images (`FID.jackknife`, docs/method.md 5). The Frechet distance is computed here from the moments, in float64
(`frechet_distance`), equal to torchmetrics' formula to rounding error.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance

INCEPTION_WEIGHTS_KEY = "metrics.fid.inception_weights"
INCEPTION_FEATURES = 2048
BLOCKS_KEY = "eval.n_splits"  # the jackknife's K (the SW estimator's split count for the vector tasks)


def check_inception_weights(path: str | os.PathLike | None) -> Path:
    """The Inception weights file as a Path; ValueError naming the config key if it is unset or missing."""
    if path is None:
        raise ValueError(
            f"{INCEPTION_WEIGHTS_KEY} is not set: FID with Inception needs torch-fidelity's local weights file "
            "weights-inception-2015-12-05-6726825d.pth (nothing is downloaded)"
        )
    path = Path(path).expanduser()
    if not path.is_file():
        raise ValueError(
            f"{INCEPTION_WEIGHTS_KEY}: Inception weights file not found: {path} "
            "(expected torch-fidelity's weights-inception-2015-12-05-6726825d.pth; nothing is downloaded)"
        )
    return path


def check_images(images: torch.Tensor) -> torch.Tensor:
    """ValueError unless `images` is a float (N, 3, H, W) batch in [0, 1]."""
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[1] != 3:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"images: expected a float tensor (N, 3, H, W) in [0, 1], got {shape}")
    if not images.is_floating_point():
        raise ValueError(f"images: expected floats in [0, 1], got dtype {images.dtype}")
    if images.numel() and (images.min() < 0 or images.max() > 1):
        raise ValueError(
            f"images: values must lie in [0, 1], got [{images.min().item():.4g}, {images.max().item():.4g}]"
        )
    return images


def block_of(index: torch.Tensor, n_blocks: int, round_size: int) -> torch.Tensor:
    """The jackknife block of each generated image by its position `index` in the generated stream: images come
    in rounds of `round_size` (one image of each class), and round r goes to block r mod `n_blocks`. Whole
    rounds keep every block class-balanced, as the full set is: a block of whole classes would make the
    leave-one-block-out FIDs differ by which classes they lack, which is no part of the sampling noise."""
    return (index // round_size) % n_blocks


def check_blocks(n_blocks: Any, n_images: int, round_size: int) -> None:
    """ValueError naming `eval.n_splits` unless `n_blocks` is an integer >= 1 and, for a jackknife (>= 2), each
    of its blocks of the `n_images` holds at least one whole round of `round_size` and each set without one
    block has the two images a covariance needs."""
    if isinstance(n_blocks, bool) or not isinstance(n_blocks, int) or n_blocks < 1:
        raise ValueError(f"{BLOCKS_KEY}: expected an integer >= 1 (FID's jackknife blocks), got {n_blocks!r}")
    if n_blocks == 1:
        return
    sizes = torch.bincount(block_of(torch.arange(n_images), n_blocks, round_size), minlength=n_blocks)
    if n_images // round_size < n_blocks or n_images - int(sizes.max()) < 2:
        raise ValueError(f"{BLOCKS_KEY}: {n_blocks} jackknife blocks of {n_images} generated images need at least "
                         f"{n_blocks} whole rounds of {round_size} (one image per class) and 2 images outside each "
                         f"block; use at most {max(1, n_images // round_size)} blocks or more images")


def psd_sqrt(sigma: torch.Tensor) -> torch.Tensor:
    """The symmetric square root of a covariance matrix, its rounding-negative eigenvalues taken as 0."""
    w, v = torch.linalg.eigh(sigma)
    return (v * w.clamp(min=0).sqrt()) @ v.T


def frechet_distance(mu1: torch.Tensor, sigma1: torch.Tensor, mu2: torch.Tensor, sigma2: torch.Tensor,
                     sqrt_sigma1: torch.Tensor | None = None) -> float:
    """|mu1 - mu2|^2 + tr S1 + tr S2 - 2 tr (S1 S2)^(1/2) in float64 (torchmetrics' formula).

    The eigenvalues of S1 S2 are those of the symmetric A S2 A with A = S1^(1/2) (XY and YX share their
    eigenvalues), so the last trace is the sum of the square roots of one symmetric eigendecomposition's
    eigenvalues, and A (`sqrt_sigma1`) is computed once for a reference set scored many times. torchmetrics
    takes the general eigenvalues of S1 S2 instead, several times slower, with the same value up to rounding."""
    mu1, sigma1, mu2, sigma2 = (t.double() for t in (mu1, sigma1, mu2, sigma2))
    a = psd_sqrt(sigma1) if sqrt_sigma1 is None else sqrt_sigma1.double()
    m = a @ sigma2 @ a
    root = torch.linalg.eigvalsh((m + m.T) / 2).clamp(min=0).sqrt().sum()
    return float((mu1 - mu2).square().sum() + sigma1.trace() + sigma2.trace() - 2 * root)


class BlockMoments:
    """Float64 feature sums and sums of outer products of a stream of images in `n_blocks` blocks (`block_of`),
    from which the moments of all the images or of all but one block follow without a second pass."""

    def __init__(self, n_blocks: int, round_size: int, num_features: int, device: torch.device) -> None:
        self.n_blocks, self.round_size, self.seen = n_blocks, round_size, 0
        self.count = torch.zeros(n_blocks, dtype=torch.int64, device=device)
        self.sum = torch.zeros(n_blocks, num_features, dtype=torch.float64, device=device)
        self.outer = torch.zeros(n_blocks, num_features, num_features, dtype=torch.float64, device=device)

    def add(self, features: torch.Tensor) -> None:
        """The features (n, F) of the next n images of the stream."""
        f = features.double()
        block = block_of(torch.arange(self.seen, self.seen + len(f), device=f.device), self.n_blocks, self.round_size)
        for k in block.unique().tolist():
            rows = f[block == k]
            self.count[k] += len(rows)
            self.sum[k] += rows.sum(0)
            self.outer[k] += rows.T @ rows
        self.seen += len(f)

    def moments(self, without: int | None = None) -> tuple[torch.Tensor, torch.Tensor, int]:
        """(mean, covariance with the n - 1 normalisation, n) of every image, or of those outside block
        `without`: the total's sums minus the block's."""
        n, s, o = self.count.sum(), self.sum.sum(0), self.outer.sum(0)
        if without is not None:
            n, s, o = n - self.count[without], s - self.sum[without], o - self.outer[without]
        n = int(n)
        mu = s / n
        return mu, (o - n * torch.outer(mu, mu)) / (n - 1), n


@dataclass(frozen=True)
class JackknifeFID:
    """FID of all N generated images and, over K >= 2 blocks, the jackknife pseudo-values
    p_k = K FID - (K - 1) FID_{-k}, FID_{-k} that of the images outside block k (none for K = 1)."""

    fid: float
    pseudo_values: tuple[float, ...] = ()

    @property
    def se(self) -> float | None:
        """The jackknife standard error, sqrt((K - 1) / K sum_k (FID_{-k} - mean)^2) = SD(p_k) / sqrt(K)."""
        p = np.asarray(self.pseudo_values, dtype=np.float64)
        return float(p.std(ddof=1) / np.sqrt(len(p))) if len(p) > 1 else None


def _batches(images: torch.Tensor | Iterable[torch.Tensor], batch_size: int) -> Iterable[torch.Tensor]:
    """A tensor is split along N (so it is not iterated image by image); an iterable yields its batches."""
    if isinstance(images, torch.Tensor):
        return images.split(batch_size)
    return images


def _fingerprint(module: nn.Module, recipe: str) -> str:
    """sha256 of the network's architecture (`repr`), its parameters and buffers, and the input recipe:
    a cache made with any other network or preprocessing does not match."""
    h = hashlib.sha256(recipe.encode())
    h.update(repr(module).encode())
    for name, value in module.state_dict().items():
        h.update(f"{name}:{value.dtype}:{tuple(value.shape)}".encode())
        h.update(value.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


class _Features(nn.Module):
    """A feature network with the `num_features` attribute torchmetrics reads (so it probes nothing)."""

    def __init__(self, net: nn.Module, num_features: int) -> None:
        super().__init__()
        self.net = net
        self.num_features = num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).reshape(x.shape[0], -1)  # (N, F)


class FID:
    """FID of generated images against one reference set, with the reference statistics cached.

    Give exactly one of `feature` (a network images -> (N, F), put in eval mode) or `inception_weights`
    (the local Inception file). `reference_cache` (an .npz of `mu`, `sigma`, `n` and the feature network's
    `fingerprint`) names one reference set: it is reused only when the fingerprint matches, else recomputed
    and overwritten. Features accumulate as float64 sums batch by batch, so memory is O(K F^2) for K jackknife
    blocks (K = 10 of Inception's F = 2048: 340 MB), not O(N F).
    """

    def __init__(
        self,
        feature: nn.Module | None = None,
        inception_weights: str | os.PathLike | None = None,
        reference_cache: str | os.PathLike | None = None,
        batch_size: int = 64,
        device: str | torch.device = "cpu",
    ) -> None:
        if feature is not None and inception_weights is not None:
            raise ValueError(f"FID: give either a feature network or {INCEPTION_WEIGHTS_KEY}, not both")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size
        self.device = torch.device(device)
        self.reference_cache = None if reference_cache is None else Path(reference_cache)
        self.reference_n: int | None = None
        self._sqrt_reference: torch.Tensor | None = None  # the reference covariance's root, once per reference
        self._metric: FrechetInceptionDistance | None = None
        if feature is None:
            weights = check_inception_weights(inception_weights)
            self._metric = FrechetInceptionDistance(
                feature=INCEPTION_FEATURES,
                reset_real_features=False,
                feature_extractor_weights_path=str(weights),
                sync_on_compute=False,  # one process scores its own samples, even inside a DDP job
            ).to(self.device)
            self._uint8 = True
            self._fingerprint = _fingerprint(self._metric.inception, "inception-2048:uint8-round")
        else:
            self._feature = feature.eval().to(self.device)
            self._uint8 = False
            self._fingerprint = _fingerprint(feature, "custom:float01")

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    def _metric_for(self, num_features: int) -> FrechetInceptionDistance:
        """The torchmetrics metric, built on first need for a custom network (its F known only then)."""
        if self._metric is None:
            self._metric = FrechetInceptionDistance(
                feature=_Features(self._feature, num_features), reset_real_features=False, sync_on_compute=False
            ).to(self.device)
        return self._metric

    def _prepare(self, images: torch.Tensor) -> torch.Tensor:
        images = check_images(images).to(self.device)
        return (images * 255).round().to(torch.uint8) if self._uint8 else images

    @torch.no_grad()
    def _accumulate(self, images: torch.Tensor | Iterable[torch.Tensor], generated: BlockMoments | None = None) -> None:
        """The features of `images` into the reference sums (torchmetrics'), or into `generated`."""
        for batch in _batches(images, self.batch_size):
            batch = self._prepare(batch)
            if batch.shape[0] == 0:
                continue  # adds nothing; the networks' (N, F) reshape cannot infer F from no rows
            if self._metric is None:
                # F from one image: torchmetrics would probe with a random image from the global RNG.
                self._metric_for(self._feature(batch[:1]).reshape(1, -1).shape[1])
            if generated is None:
                self._metric.update(batch, real=True)
            else:
                generated.add(self._metric.inception(batch))

    def set_reference(self, images: torch.Tensor | Iterable[torch.Tensor]) -> None:
        """Reference statistics from `images` (a tensor or an iterable of batches, consumed lazily), or from
        `reference_cache` when it holds this network's statistics; a fresh computation is cached."""
        self._sqrt_reference = None
        if self._load_cache():
            return
        metric = self._metric
        if metric is not None:
            metric.reset_real_features = True
            metric.reset()
            metric.reset_real_features = False
        self._accumulate(images)
        n = 0 if self._metric is None else int(self._metric.real_features_num_samples)
        if n < 2:
            raise ValueError(f"images: the reference set needs at least 2 images, got {n}")
        self.reference_n = n
        if self.reference_cache is not None:
            self._save_cache()

    def reference_stats(self) -> tuple[np.ndarray, np.ndarray, int]:
        """(mu, sigma, n) of the reference features (float64; sigma with the n - 1 normalisation)."""
        mu, sigma, n = self._reference_moments()
        return mu.cpu().numpy(), sigma.cpu().numpy(), n

    def _reference_moments(self) -> tuple[torch.Tensor, torch.Tensor, int]:
        if self.reference_n is None:
            raise RuntimeError("FID: no reference set: call set_reference() first")
        m = self._metric
        n = int(m.real_features_num_samples)
        mu = m.real_features_sum / n
        return mu, (m.real_features_cov_sum - n * torch.outer(mu, mu)) / (n - 1), n

    def score(self, generated: torch.Tensor | Iterable[torch.Tensor]) -> float:
        """FID of `generated` (a tensor or an iterable of batches) against the reference set."""
        return self.jackknife(generated).fid

    def jackknife(self, generated: torch.Tensor | Iterable[torch.Tensor], n_blocks: int = 1,
                  round_size: int = 1) -> JackknifeFID:
        """FID of `generated` and, for `n_blocks` K >= 2, its delete-a-block jackknife (docs/method.md 5): the
        images in K blocks of whole rounds of `round_size` (`block_of`), FID_{-k} from the moments without block
        k; K + 1 Frechet distances from one pass over the images."""
        mu, sigma, _ = self._reference_moments()
        moments = BlockMoments(n_blocks, round_size, mu.shape[0], self.device)
        self._accumulate(generated, moments)
        if moments.seen < 2:
            raise ValueError("generated: FID needs at least 2 generated images")
        check_blocks(n_blocks, moments.seen, round_size)
        if self._sqrt_reference is None:
            self._sqrt_reference = psd_sqrt(sigma)
        fid = frechet_distance(mu, sigma, *moments.moments()[:2], sqrt_sigma1=self._sqrt_reference)
        if n_blocks == 1:
            return JackknifeFID(fid)
        without = [frechet_distance(mu, sigma, *moments.moments(k)[:2], sqrt_sigma1=self._sqrt_reference)
                   for k in range(n_blocks)]
        return JackknifeFID(fid, tuple(n_blocks * fid - (n_blocks - 1) * f for f in without))

    def _load_cache(self) -> bool:
        path = self.reference_cache
        if path is None or not path.is_file():
            return False
        with np.load(path) as cache:
            if str(cache["fingerprint"]) != self._fingerprint:
                return False
            mu, sigma, n = cache["mu"], cache["sigma"], int(cache["n"])
        mu_t = torch.as_tensor(mu, dtype=torch.float64, device=self.device)
        sigma_t = torch.as_tensor(sigma, dtype=torch.float64, device=self.device)
        metric = self._metric_for(mu.shape[0])
        # torchmetrics keeps sums; invert its mean/covariance formulas.
        metric.real_features_sum = n * mu_t
        metric.real_features_cov_sum = (n - 1) * sigma_t + n * torch.outer(mu_t, mu_t)
        metric.real_features_num_samples = torch.tensor(n, device=self.device)
        self.reference_n = n
        return True

    def _save_cache(self) -> None:
        mu, sigma, n = self.reference_stats()
        path = self.reference_cache
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            with open(tmp, "wb") as f:
                np.savez(f, mu=mu, sigma=sigma, n=np.int64(n), fingerprint=np.str_(self._fingerprint))
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)


def inception_fid(
    weights_path: str | os.PathLike | None,
    reference_cache: str | os.PathLike | None = None,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
) -> FID:
    """FID with torch-fidelity's Inception-v3 (2048-d pool features) loaded from `weights_path`
    (`metrics.fid.inception_weights`); ValueError naming that key when the file is unset or missing."""
    return FID(
        inception_weights=check_inception_weights(weights_path),
        reference_cache=reference_cache,
        batch_size=batch_size,
        device=device,
    )
