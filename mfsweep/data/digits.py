"""scikit-learn's handwritten digits as a small class-conditional image set for CPU demos of the latent DiT
task: 1,797 grey 8x8 images in 10 classes, shipped inside scikit-learn (nothing is downloaded).

The task trains in pixel space: each image (0..16 ink levels) is scaled to [0, 1], upsampled bilinearly
(antialiased) to `image_size` and mapped to [-1, 1], one channel. `to_images` maps samples back to the
FID convention, `(N, 3, H, W)` in [0, 1] (grey repeated over RGB).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

NUM_CLASSES = 10


def load_digits_tensor(image_size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """All digits as `(1797, 1, image_size, image_size)` float32 in [-1, 1] and their labels `(1797,)`."""
    from sklearn.datasets import load_digits  # ships its data; imported here to keep startup light

    if not isinstance(image_size, int) or image_size < 8:
        raise ValueError(f"dataset.image_size must be an integer >= 8, got {image_size!r}")
    digits = load_digits()
    x = torch.as_tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0  # (N, 1, 8, 8) in [0, 1]
    if image_size != 8:
        x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False, antialias=True)
    return (x.clamp(0, 1) * 2 - 1).contiguous(), torch.as_tensor(digits.target, dtype=torch.long)


class DigitsImages:
    """The digits set in memory, with the interface the latent DiT task reads (`fetch`, `to_images`)."""

    num_classes = NUM_CLASSES

    def __init__(self, image_size: int = 16):
        self.x, self.y = load_digits_tensor(image_size)
        self.shape = tuple(self.x.shape[1:])
        self.description = f"scikit-learn digits, {image_size}x{image_size} pixels, 1 channel in [-1, 1]"

    def __len__(self) -> int:
        return len(self.y)

    def fetch(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[index], self.y[index]

    def to_images(self, x: torch.Tensor) -> torch.Tensor:
        """Samples `(N, 1, H, W)` in [-1, 1] -> `(N, 3, H, W)` in [0, 1] (clipped)."""
        return ((x.float() + 1) / 2).clamp(0, 1).expand(-1, 3, -1, -1)
