"""Class-labelled image-like training sets for the latent DiT task, behind one small interface:

- `shape` `(C, H, W)` of one training sample, `num_classes`, `len()`;
- `fetch(index)` -> `(x, y)`: the samples `(n, C, H, W)` float32 and labels `(n,)` int64 at `index` (n,);
- `to_images(x)` -> `(n, 3, H', W')` in [0, 1]: what FID sees (VAE decoding for latents);
- `description`: one line for the record.

`LatentImages` reads an `mfsweep-encode` folder (ImageNet 256 latents); `mfsweep.data.digits.DigitsImages` is
the pixel-space CPU demo set.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Protocol

import torch

from mfsweep.data.latents import LatentDataset, load_vae

from mfsweep.data import IMAGE_DATASETS
from mfsweep.method.errors import ConfigValueError


class ImageData(Protocol):
    shape: tuple[int, int, int]
    num_classes: int
    description: str

    def __len__(self) -> int: ...

    def fetch(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...

    def to_images(self, x: torch.Tensor) -> torch.Tensor: ...


class LatentImages:
    """VAE latents from an `mfsweep-encode` folder (memory-mapped), decoded for FID through the VAE that made
    them (`vae`: a local folder or hub id; default the one recorded in the folder's meta.json)."""

    def __init__(self, folder: str | os.PathLike, vae: str | None = None):
        self.dataset = LatentDataset(folder)
        meta = self.dataset.meta
        self.shape = tuple(meta["latent_shape"])
        self.num_classes = len(self.dataset.classes)
        self.scaling_factor, self.shift_factor = float(meta["scaling_factor"]), float(meta.get("shift_factor", 0.0))
        self.vae_name = vae or meta["vae"]
        self.description = (f"VAE latents {'x'.join(map(str, self.shape))} of {meta['image_size']}px images "
                            f"({meta['count']} with flips) from {folder}, VAE {self.vae_name}")
        self._vae: Any = None

    def __len__(self) -> int:
        return len(self.dataset)

    def fetch(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        rows = [self.dataset[i] for i in index.tolist()]
        return torch.stack([x for x, _ in rows]), torch.tensor([y for _, y in rows], dtype=torch.long)

    @torch.no_grad()
    def to_images(self, x: torch.Tensor) -> torch.Tensor:
        """Latents -> the VAE's decoded images in [0, 1] (inverting `(mean - shift) * scale` first)."""
        if self._vae is None or self._vae.device != x.device:
            self._vae = load_vae(self.vae_name, x.device)
        decoded = self._vae.decode(x.float() / self.scaling_factor + self.shift_factor).sample  # [-1, 1]
        return ((decoded + 1) / 2).clamp(0, 1)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_vae": None}


def check_image_data(name: str, num_classes: int, **keys: Any) -> int:
    """The side of one training sample of image set `name`, after checking its keys without loading it
    (ConfigValueError naming the key): `image_size` for digits, the latent folder's meta.json otherwise."""
    if name == "digits":
        size = keys.get("image_size")
        if isinstance(size, bool) or not isinstance(size, int) or size < 8:
            raise ConfigValueError("dataset.image_size", f"must be >= 8, got {size!r}")
        return size
    if name != "imagenet_latents":
        raise ConfigValueError("dataset.name", f"must be one of {list(IMAGE_DATASETS)}, got {name!r}")
    path = keys.get("path")
    if path is None:
        raise ConfigValueError("dataset.path", "is not set: give the mfsweep-encode output folder "
                                               "(or set MFSWEEP_IMAGENET_LATENTS)")
    meta_path = Path(str(path)).expanduser() / "meta.json"
    if not meta_path.is_file():
        raise ConfigValueError("dataset.path", f"no mfsweep-encode output (meta.json) in {Path(str(path)).expanduser()}")
    meta = json.loads(meta_path.read_text())
    if not meta.get("complete"):
        raise ConfigValueError("dataset.path", f"the encoding in {meta_path.parent} is incomplete: re-run mfsweep-encode")
    if len(meta["classes"]) != num_classes:
        raise ConfigValueError("dataset.num_classes", f"{num_classes}, but {meta_path.parent} holds "
                                                      f"{len(meta['classes'])} classes")
    return int(meta["latent_shape"][-1])


def make_image_data(name: str, **keys: Any) -> ImageData:
    """The image set `dataset.name` from its config keys."""
    if name == "imagenet_latents":
        return LatentImages(Path(str(keys["path"])).expanduser(), keys.get("vae"))
    if name == "digits":
        from mfsweep.data.digits import DigitsImages

        return DigitsImages(keys["image_size"])
    raise ValueError(f"dataset.name must be one of {IMAGE_DATASETS}, got {name!r}")

