"""Frechet distance between generated and reference images in a feature space (FID, docs/method.md 5).

A thin layer on torchmetrics' `FrechetInceptionDistance`: it adds a reference set whose statistics are
computed once and cached on disk, and a fixed image convention. Two feature networks:
- Inception-v3 from torch-fidelity's local weights file `weights-inception-2015-12-05-6726825d.pth`
  (config key `metrics.fid.inception_weights`); nothing is ever downloaded;
- any `nn.Module` mapping images `(N, 3, H, W)` to features `(N, F)` (the CPU demo uses a small one).

Images are float tensors `(N, 3, H, W)` in [0, 1] (a VAE's [-1, 1] output maps as `(x + 1) / 2`).
Inception receives them quantised to uint8 by rounding (`round(255 x)`; torchmetrics' own `normalize`
truncates) and resizes them to 299 x 299 itself; a custom network receives the floats unchanged.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Iterable

import numpy as np
import torch
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance

INCEPTION_WEIGHTS_KEY = "metrics.fid.inception_weights"
INCEPTION_FEATURES = 2048


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
    and overwritten. Features accumulate as float64 sums batch by batch, so memory is O(F^2), not O(N F).
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
    def _accumulate(self, images: torch.Tensor | Iterable[torch.Tensor], real: bool) -> None:
        for batch in _batches(images, self.batch_size):
            batch = self._prepare(batch)
            if batch.shape[0] == 0:
                continue  # adds nothing; the networks' (N, F) reshape cannot infer F from no rows
            if self._metric is None:
                # F from one image: torchmetrics would probe with a random image from the global RNG.
                self._metric_for(self._feature(batch[:1]).reshape(1, -1).shape[1])
            self._metric.update(batch, real=real)

    def set_reference(self, images: torch.Tensor | Iterable[torch.Tensor]) -> None:
        """Reference statistics from `images` (a tensor or an iterable of batches, consumed lazily), or from
        `reference_cache` when it holds this network's statistics; a fresh computation is cached."""
        if self._load_cache():
            return
        metric = self._metric
        if metric is not None:
            metric.reset_real_features = True
            metric.reset()
            metric.reset_real_features = False
        self._accumulate(images, real=True)
        n = 0 if self._metric is None else int(self._metric.real_features_num_samples)
        if n < 2:
            raise ValueError(f"images: the reference set needs at least 2 images, got {n}")
        self.reference_n = n
        if self.reference_cache is not None:
            self._save_cache()

    def reference_stats(self) -> tuple[np.ndarray, np.ndarray, int]:
        """(mu, sigma, n) of the reference features (float64; sigma with the n - 1 normalisation)."""
        if self.reference_n is None:
            raise RuntimeError("FID: no reference set: call set_reference() first")
        m = self._metric
        n = int(m.real_features_num_samples)
        mu = m.real_features_sum / n
        sigma = (m.real_features_cov_sum - n * torch.outer(mu, mu)) / (n - 1)
        return mu.cpu().numpy(), sigma.cpu().numpy(), n

    def score(self, generated: torch.Tensor | Iterable[torch.Tensor]) -> float:
        """FID of `generated` (a tensor or an iterable of batches) against the reference set."""
        if self.reference_n is None:
            raise RuntimeError("FID: no reference set: call set_reference() first")
        self._metric.reset()  # clears the generated side only (reset_real_features=False)
        self._accumulate(generated, real=False)
        if int(self._metric.fake_features_num_samples) < 2:
            raise ValueError("generated: FID needs at least 2 generated images")
        return float(self._metric.compute())

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
