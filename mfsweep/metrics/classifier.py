"""A small classifier whose penultimate features stand in for Inception in the CPU demo's Frechet distance
(`metrics.fid.features=classifier`): FID's recipe with a feature network that knows the data.

It is trained once, deterministically from a seed (initial weights and batch order from one generator;
a few seconds on 2 cores), and cached as a state dict under the cache folder, so every cell of a sweep
scores in the same feature space. The FID layer fingerprints its weights: a retrained network never
reuses reference statistics computed with another.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

FEATURES = 64


class DigitClassifier(nn.Module):
    """Two conv layers and an MLP on one-channel images in [-1, 1]; `body` ends at the 64-d features."""

    def __init__(self, num_classes: int, width: int = 16, features: int = FEATURES):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1), nn.SiLU(), nn.AvgPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.SiLU(), nn.AdaptiveAvgPool2d(4), nn.Flatten(),
            nn.Linear(2 * width * 16, features), nn.SiLU(),
        )
        self.head = nn.Linear(features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))  # (N, classes) logits


class ClassifierFeatures(nn.Module):
    """FID's feature network: images `(N, 3, H, W)` in [0, 1] (grey over RGB) -> features `(N, 64)`."""

    def __init__(self, classifier: DigitClassifier):
        super().__init__()
        self.body = classifier.body

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.body(images.mean(1, keepdim=True) * 2 - 1)


@torch.no_grad()
def _init_(module: nn.Module, g: torch.Generator) -> None:
    """PyTorch's default uniform(+-1/sqrt(fan_in)) init, drawn from `g` instead of the global RNG."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            bound = 1.0 / math.sqrt(m.weight[0].numel())
            for p in (m.weight, m.bias):
                p.copy_((torch.rand(p.shape, generator=g) * 2 - 1) * bound)


def train_classifier(
    x: torch.Tensor, y: torch.Tensor, num_classes: int, seed: int, epochs: int = 8, batch_size: int = 64,
    lr: float = 3e-3,
) -> DigitClassifier:
    """Adam on cross-entropy over `x` (N, 1, H, W) in [-1, 1], labels `y`; every draw from one generator."""
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):  # module construction draws from the global RNG: keep it local
        net = DigitClassifier(num_classes)
    _init_(net, g)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    for _ in range(epochs):
        for index in torch.randperm(len(y), generator=g).split(batch_size):
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(net(x[index]), y[index]).backward()
            opt.step()
    return net.eval().requires_grad_(False)


def cached_classifier_features(
    cache_dir: str | os.PathLike, name: str, x: torch.Tensor, y: torch.Tensor, num_classes: int, seed: int = 0,
    epochs: int = 8,
) -> ClassifierFeatures:
    """The feature network of the classifier trained on (`x`, `y`) under `cache_dir/<name>-seed<S>-ep<E>.pt`,
    training and caching it on first use. `name` identifies the training set (e.g. `digits16`)."""
    path = Path(cache_dir).expanduser() / f"{name}-seed{seed}-ep{epochs}.pt"
    with torch.random.fork_rng(devices=[]):
        net = DigitClassifier(num_classes)
    if path.is_file():
        net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        net.eval().requires_grad_(False)
    else:
        net = train_classifier(x, y, num_classes, seed, epochs)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        torch.save(net.state_dict(), tmp)
        os.replace(tmp, path)  # concurrent cells never read a half-written file
    return ClassifierFeatures(net)
