"""VAE latents for the latent DiT task: encode an ImageNet-layout image folder once into memory-mappable
shards (`encode_folder`, the `mfsweep-encode` step), then read them back (`LatentDataset`).

Recipe (DiT / MeanFlow ImageNet 256 setup, with its choices spelled out):
- classes are the sorted subfolder names of the image folder, labels their indices;
- each image is converted to RGB, center-cropped and resized to `image_size` as ADM does (box-halve while
  the short side is >= 2 * image_size, bicubic resize of the short side, center crop), scaled to [-1, 1];
- the image and its horizontal flip are both encoded, stored interleaved: row 2i is image i, row 2i + 1 its
  flip (flip augmentation for free at training time);
- the latent is the posterior MEAN, `(mean - shift_factor) * scaling_factor`, not a posterior sample:
  deterministic, so a resumed or repeated encoding gives the same numbers. (DiT's extraction stores one
  sample; MeanFlow's JAX pipeline stores mean and std and samples each step. The SD-VAE posterior std is
  small next to the data spread, so we keep the mean.) `scaling_factor` comes from `vae.config`
  (0.18215 for SD-VAE) unless overridden; `shift_factor` from `vae.config` when it sets one (else 0).

On disk: `shard-00000.latents.npy` (float32 or float16, (n, C, h, w)) and `shard-00000.labels.npy`
(int64, (n,)) per shard, plain .npy so `np.load(mmap_mode="r")` maps them (an .npz cannot be mapped), and
`meta.json` (classes, count, latent shape, scaling factor, VAE, image size, shards, `complete`). A shard is
written to temporary files and renamed, the latents file last, so a shard whose latents file exists is
complete: a re-run skips it.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

if TYPE_CHECKING:
    from diffusers import AutoencoderKL

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".ppm", ".pgm", ".tif", ".tiff"})
META_FILE = "meta.json"
STORAGE_DTYPES = ("float32", "float16")
LAYOUT = "interleaved: row 2i is image i, row 2i+1 its horizontal flip"


# ---------------------------------------------------------------- image folder


def _hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def list_images(image_dir: str | os.PathLike) -> tuple[list[str], list[tuple[Path, int]]]:
    """(sorted class names, [(image path, label)]) of an ImageNet-layout folder: one subfolder per class,
    images anywhere below it, in sorted order. Hidden entries (dot names) are ignored; anything else that
    is not an image file is an error naming its path."""
    root = Path(image_dir)
    if not root.is_dir():
        raise ValueError(f"image_dir: folder not found: {root}")
    classes = []
    for entry in sorted(root.iterdir()):
        if entry.name.startswith("."):
            continue
        if not entry.is_dir():
            raise ValueError(f"image_dir: expected only class subfolders in {root}, found the file {entry}")
        classes.append(entry.name)
    if not classes:
        raise ValueError(f"image_dir: no class subfolders in {root}")
    items = []
    for label, name in enumerate(classes):
        files = sorted(p for p in (root / name).rglob("*") if p.is_file() and not _hidden(p, root))
        if not files:
            raise ValueError(f"image_dir: class folder has no images: {root / name}")
        for path in files:
            if path.suffix.lower() not in IMAGE_EXTENSIONS:
                raise ValueError(f"image_dir: not an image file: {path}")
            items.append((path, label))
    return classes, items


def center_crop(image: Image.Image, image_size: int) -> Image.Image:
    """ADM's center crop (guided-diffusion `center_crop_arr`): halve with a box filter while the short side
    is >= 2 * image_size, resize the short side to image_size (bicubic), crop the center square."""
    while min(image.size) >= 2 * image_size:
        image = image.resize(tuple(s // 2 for s in image.size), resample=Image.BOX)
    scale = image_size / min(image.size)
    image = image.resize(tuple(round(s * scale) for s in image.size), resample=Image.BICUBIC)
    left = (image.width - image_size) // 2
    top = (image.height - image_size) // 2
    return image.crop((left, top, left + image_size, top + image_size))


def load_image(path: str | os.PathLike, image_size: int) -> torch.Tensor:
    """One image as a (3, image_size, image_size) float32 tensor in [-1, 1]; ValueError naming an
    unreadable file."""
    try:
        with Image.open(path) as image:
            image = image.convert("RGB")
    except (UnidentifiedImageError, OSError) as err:
        raise ValueError(f"image_dir: cannot read image {path}: {err}") from err
    pixels = np.asarray(center_crop(image, image_size), dtype=np.float32)  # (S, S, 3)
    return torch.from_numpy(pixels).permute(2, 0, 1) / 127.5 - 1.0  # (3, S, S)


class _ImageFiles(Dataset):
    """Decoded, cropped images of a list of files (so a DataLoader can decode in workers)."""

    def __init__(self, paths: list[Path], image_size: int) -> None:
        self.paths = paths
        self.image_size = image_size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        return load_image(self.paths[index], self.image_size)


# ---------------------------------------------------------------- VAE


def load_vae(vae: str | os.PathLike, device: str | torch.device = "cpu") -> "AutoencoderKL":
    """A diffusers AutoencoderKL from a local folder or a hub id, frozen, in eval mode."""
    from diffusers import AutoencoderKL  # heavy import, needed only for encoding

    try:
        model = AutoencoderKL.from_pretrained(str(vae))
    except (OSError, ValueError) as err:
        raise ValueError(f"vae: cannot load an AutoencoderKL from {str(vae)!r}: {err}") from err
    return model.eval().requires_grad_(False).to(device)


@torch.no_grad()
def encode_latents(
    vae: "AutoencoderKL", images: torch.Tensor, scaling_factor: float, shift_factor: float = 0.0
) -> torch.Tensor:
    """Latents `(posterior mean - shift_factor) * scaling_factor` of images (N, 3, S, S) in [-1, 1]."""
    mean = vae.encode(images).latent_dist.mean  # (N, C, h, w)
    return (mean - shift_factor) * scaling_factor


# ---------------------------------------------------------------- encoding step


@dataclass(frozen=True)
class EncodeSummary:
    """What one `encode_folder` call did: `count` latents in all (two per image), shards written/skipped."""

    out_dir: Path
    count: int
    shards_written: int
    shards_skipped: int


def _shard_files(out_dir: Path, name: str) -> tuple[Path, Path]:
    return out_dir / f"{name}.latents.npy", out_dir / f"{name}.labels.npy"


def _save_npy(path: Path, array: np.ndarray) -> Path:
    """Write to a temporary file beside `path` (renamed by the caller)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        np.save(f, array)
    return tmp


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    os.replace(tmp, path)


def _files_sha256(items: list[tuple[Path, int]], root: Path) -> str:
    h = hashlib.sha256()
    for path, label in items:
        h.update(f"{path.relative_to(root).as_posix()}\t{label}\n".encode())
    return h.hexdigest()


def _check_positive(**values: int) -> None:
    for key, value in values.items():
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{key} must be a positive integer, got {value!r}")


def encode_folder(
    image_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    vae: str | os.PathLike,
    image_size: int = 256,
    shard_size: int = 4096,
    batch_size: int = 32,
    scaling_factor: float | None = None,
    dtype: str = "float32",
    device: str | torch.device = "cpu",
    num_workers: int = 0,
    progress: bool = True,
) -> EncodeSummary:
    """Encode `image_dir` (ImageNet layout) with the AutoencoderKL `vae` into shards under `out_dir`.

    `shard_size` and `batch_size` count source images (each gives two latents: image and flip). Finished
    shards are skipped, so an interrupted run resumes; `out_dir` holding latents made with other settings
    or other files is an error (its meta.json disagrees).
    """
    _check_positive(image_size=image_size, shard_size=shard_size, batch_size=batch_size)
    if dtype not in STORAGE_DTYPES:
        raise ValueError(f"dtype must be one of {STORAGE_DTYPES}, got {dtype!r}")
    root = Path(image_dir)
    out = Path(out_dir)
    classes, items = list_images(root)
    model = load_vae(vae, device)
    scale = model.config.get("scaling_factor") if scaling_factor is None else scaling_factor
    if scale is None:
        raise ValueError(f"scaling_factor: the VAE {str(vae)!r} sets none in its config: give one")
    shift = model.config.get("shift_factor") or 0.0
    probe = torch.zeros(1, 3, image_size, image_size, device=device)
    latent_shape = list(encode_latents(model, probe, scale, shift).shape[1:])

    starts = range(0, len(items), shard_size)
    shards = [{"name": f"shard-{i:05d}", "count": 2 * len(items[s : s + shard_size])} for i, s in enumerate(starts)]
    meta = {
        "schema": 1,
        "vae": str(Path(vae).resolve()) if Path(vae).is_dir() else str(vae),
        "image_size": image_size,
        "crop": "adm_center",
        "posterior": "mean",
        "scaling_factor": float(scale),
        "shift_factor": float(shift),
        "flip": True,
        "layout": LAYOUT,
        "dtype": dtype,
        "latent_shape": latent_shape,
        "classes": classes,
        "n_images": len(items),
        "count": 2 * len(items),
        "shard_size": shard_size,
        "shards": shards,
        "files_sha256": _files_sha256(items, root),
        "complete": False,
    }
    meta_path = out / META_FILE
    if meta_path.is_file():
        old = json.loads(meta_path.read_text())
        differ = sorted(k for k in set(old) | set(meta) if k != "complete" and old.get(k) != meta.get(k))
        if differ:
            raise ValueError(
                f"out_dir: {out} holds latents encoded with other settings or files (differ: {', '.join(differ)}); "
                "use a new folder"
            )
    out.mkdir(parents=True, exist_ok=True)
    _write_json(meta_path, meta)

    written = skipped = 0
    bar = tqdm(total=len(items), unit="img", desc="encode", disable=not progress)
    for shard, start in zip(shards, starts):
        latents_path, labels_path = _shard_files(out, shard["name"])
        chunk = items[start : start + shard_size]
        if latents_path.is_file():
            skipped += 1
            bar.update(len(chunk))
            continue
        _encode_shard(model, chunk, latents_path, labels_path, image_size, batch_size, scale, shift,
                      np.dtype(dtype), device, num_workers, bar.update)
        written += 1
    bar.close()
    _write_json(meta_path, {**meta, "complete": True})
    return EncodeSummary(out_dir=out, count=meta["count"], shards_written=written, shards_skipped=skipped)


def _encode_shard(
    model: "AutoencoderKL",
    chunk: list[tuple[Path, int]],
    latents_path: Path,
    labels_path: Path,
    image_size: int,
    batch_size: int,
    scale: float,
    shift: float,
    dtype: np.dtype,
    device: str | torch.device,
    num_workers: int,
    advance: Callable[[int], Any],
) -> None:
    loader = DataLoader(_ImageFiles([p for p, _ in chunk], image_size), batch_size=batch_size,
                        num_workers=num_workers)
    parts = []
    for images in loader:  # (B, 3, S, S)
        both = torch.stack([images, images.flip(-1)], dim=1).flatten(0, 1)  # (2B, 3, S, S), flip after each
        parts.append(encode_latents(model, both.to(device), scale, shift).cpu().numpy().astype(dtype))
        advance(len(images))
    labels = np.repeat(np.array([label for _, label in chunk], dtype=np.int64), 2)
    tmps = [_save_npy(labels_path, labels), _save_npy(latents_path, np.concatenate(parts))]
    try:
        os.replace(tmps[0], labels_path)
        os.replace(tmps[1], latents_path)  # last: its presence marks the shard complete
    finally:
        for tmp in tmps:
            tmp.unlink(missing_ok=True)


# ---------------------------------------------------------------- reading


class LatentDataset(Dataset):
    """(latent float32 tensor (C, h, w), label int) from an `encode_folder` output, memory-mapped.

    Shards are mapped lazily in each process (after a DataLoader forks or spawns its workers), so nothing
    but paths is pickled. `classes` and `meta` mirror meta.json.
    """

    def __init__(self, folder: str | os.PathLike) -> None:
        root = Path(folder)
        meta_path = root / META_FILE
        if not meta_path.is_file():
            raise ValueError(f"folder: {root} has no {META_FILE} (not an mfsweep-encode output)")
        self.meta = json.loads(meta_path.read_text())
        if not self.meta.get("complete"):
            raise ValueError(f"folder: the encoding in {root} is incomplete; re-run mfsweep-encode to finish it")
        self.classes: list[str] = self.meta["classes"]
        self.root = root
        self._ends = np.cumsum([s["count"] for s in self.meta["shards"]])
        self._arrays: list[tuple[np.ndarray, np.ndarray]] | None = None

    def _open(self) -> list[tuple[np.ndarray, np.ndarray]]:
        arrays = []
        shape = tuple(self.meta["latent_shape"])
        for shard in self.meta["shards"]:
            latents_path, labels_path = _shard_files(self.root, shard["name"])
            if not latents_path.is_file() or not labels_path.is_file():
                raise ValueError(f"folder: shard {shard['name']} is missing in {self.root}")
            latents = np.load(latents_path, mmap_mode="r")
            labels = np.load(labels_path, mmap_mode="r")
            if latents.shape != (shard["count"], *shape) or labels.shape != (shard["count"],):
                raise ValueError(
                    f"folder: {latents_path} holds {latents.shape} latents and {labels.shape} labels, "
                    f"meta.json says {(shard['count'], *shape)}"
                )
            arrays.append((latents, labels))
        return arrays

    def __len__(self) -> int:
        return int(self._ends[-1])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for {n} latents")
        index %= n
        if self._arrays is None:
            self._arrays = self._open()
        shard = int(np.searchsorted(self._ends, index, side="right"))
        row = index - (int(self._ends[shard - 1]) if shard else 0)
        latents, labels = self._arrays[shard]
        return torch.from_numpy(np.array(latents[row], dtype=np.float32)), int(labels[row])

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_arrays": None}
