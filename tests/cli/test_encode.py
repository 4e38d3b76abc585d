"""The VAE encoding step (mfsweep.data.latents, mfsweep-encode) with a tiny random AutoencoderKL."""
from __future__ import annotations

import json
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mfsweep.cli.encode import main
from mfsweep.data.latents import LatentDataset, center_crop, encode_folder, load_image

SIZE = 32
# (class, file, (width, height)): sizes whose ADM crop margins are even, so crop and mirror commute;
# 64 and 80 exercise the box-halving step.
IMAGES = [
    ("cat", "a.png", (32, 32)),
    ("cat", "b.png", (40, 48)),
    ("cat", "c.png", (80, 64)),
    ("dog", "d.png", (48, 40)),
    ("dog", "e.png", (32, 32)),
]


def make_folder(root: Path, mirror: bool = False) -> Path:
    rng = np.random.default_rng(0)
    for cls, name, (w, h) in IMAGES:
        pixels = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
        image = Image.fromarray(pixels)
        if mirror:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        (root / cls).mkdir(parents=True, exist_ok=True)
        image.save(root / cls / name)
    return root


@pytest.fixture(scope="module")
def vae_dir(tmp_path_factory) -> Path:
    from diffusers import AutoencoderKL

    with torch.random.fork_rng():
        torch.manual_seed(0)  # module init draws from the global RNG; fork_rng keeps that local
        vae = AutoencoderKL(
            block_out_channels=(32, 64),
            latent_channels=4,
            down_block_types=("DownEncoderBlock2D",) * 2,
            up_block_types=("UpDecoderBlock2D",) * 2,
            norm_num_groups=8,
            layers_per_block=1,
            sample_size=SIZE,
        )
    path = tmp_path_factory.mktemp("vae")
    vae.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def encoded(tmp_path_factory, vae_dir):
    base = tmp_path_factory.mktemp("enc")
    images = make_folder(base / "images")
    summary = encode_folder(images, base / "latents", vae_dir, image_size=SIZE, shard_size=2, batch_size=2,
                            progress=False)
    return images, base / "latents", summary


def shards(out: Path) -> tuple[np.ndarray, np.ndarray]:
    latents = np.concatenate([np.load(p) for p in sorted(out.glob("shard-*.latents.npy"))])
    labels = np.concatenate([np.load(p) for p in sorted(out.glob("shard-*.labels.npy"))])
    return latents, labels


def test_shards_hold_every_image_and_its_flip(encoded, vae_dir):
    _, out, summary = encoded
    assert (summary.count, summary.shards_written, summary.shards_skipped) == (10, 3, 0)
    latents, labels = shards(out)
    assert latents.shape == (10, 4, SIZE // 2, SIZE // 2) and latents.dtype == np.float32
    assert labels.tolist() == [0, 0, 0, 0, 0, 0, 1, 1, 1, 1] and labels.dtype == np.int64
    meta = json.loads((out / "meta.json").read_text())
    assert meta["classes"] == ["cat", "dog"] and meta["count"] == 10 and meta["n_images"] == 5
    assert meta["latent_shape"] == [4, SIZE // 2, SIZE // 2] and meta["image_size"] == SIZE
    assert meta["scaling_factor"] == pytest.approx(0.18215) and meta["posterior"] == "mean"
    assert meta["vae"] == str(vae_dir.resolve()) and meta["complete"] is True
    assert [s["count"] for s in meta["shards"]] == [4, 4, 2]


def test_center_crop_and_scaling_follow_adm(tmp_path):
    """Hand-computed ADM crops: a tall image needs no resize, only the centre rows; one twice the size is
    first halved by a 2x2 box average."""
    rng = np.random.default_rng(1)
    tall = rng.integers(0, 256, size=(48, 32, 3), dtype=np.uint8)  # (H, W, 3)
    np.testing.assert_array_equal(np.asarray(center_crop(Image.fromarray(tall), 32)), tall[8:40])
    big = rng.integers(0, 256, size=(96, 64, 3), dtype=np.uint8)
    halved = big.reshape(48, 2, 32, 2, 3).mean(axis=(1, 3))
    cropped = np.asarray(center_crop(Image.fromarray(big), 32), dtype=np.float64)
    np.testing.assert_allclose(cropped, halved[8:40], atol=1)  # PIL rounds after each of its two passes

    Image.fromarray(tall).save(tmp_path / "tall.png")
    x = load_image(tmp_path / "tall.png", 32)
    assert x.shape == (3, 32, 32)
    np.testing.assert_allclose(x.permute(1, 2, 0).numpy(), tall[8:40] / 127.5 - 1, atol=1e-6)


def test_latent_is_scaled_posterior_mean_of_the_image(encoded, vae_dir):
    """An independent encoding of the 32x32 image (its ADM crop is the identity) with diffusers itself."""
    from diffusers import AutoencoderKL

    images, out, _ = encoded
    vae = AutoencoderKL.from_pretrained(vae_dir).eval()
    pixels = np.asarray(Image.open(images / "cat" / "a.png"), dtype=np.float32)
    x = torch.from_numpy(pixels).permute(2, 0, 1)[None] / 127.5 - 1
    with torch.no_grad():
        expected = vae.encode(x).latent_dist.mean[0] * 0.18215
    latents, _ = shards(out)
    np.testing.assert_allclose(latents[0], expected.numpy(), atol=1e-5)


def test_flip_rows_equal_encoding_the_mirrored_images(encoded, vae_dir, tmp_path):
    _, out, _ = encoded
    mirrored = make_folder(tmp_path / "mirrored", mirror=True)
    encode_folder(mirrored, tmp_path / "latents", vae_dir, image_size=SIZE, shard_size=8, progress=False)
    latents, _ = shards(out)
    mirror_latents, _ = shards(tmp_path / "latents")
    np.testing.assert_allclose(latents[1::2], mirror_latents[0::2], atol=1e-5)
    np.testing.assert_allclose(latents[0::2], mirror_latents[1::2], atol=1e-5)
    assert not np.allclose(latents[0::2], latents[1::2], atol=1e-3)  # the flip is not a no-op


def test_rerun_skips_finished_shards_and_redoes_a_missing_one(vae_dir, tmp_path):
    images = make_folder(tmp_path / "images")
    out = tmp_path / "latents"
    encode_folder(images, out, vae_dir, image_size=SIZE, shard_size=2, progress=False)
    before, _ = shards(out)
    mtimes = {p.name: p.stat().st_mtime_ns for p in out.glob("shard-*")}

    again = encode_folder(images, out, vae_dir, image_size=SIZE, shard_size=2, progress=False)
    assert (again.shards_written, again.shards_skipped) == (0, 3)
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("shard-*")} == mtimes

    (out / "shard-00001.latents.npy").unlink()  # as if interrupted before that shard's commit
    resumed = encode_folder(images, out, vae_dir, image_size=SIZE, shard_size=2, progress=False)
    assert (resumed.shards_written, resumed.shards_skipped) == (1, 2)
    assert (out / "shard-00000.latents.npy").stat().st_mtime_ns == mtimes["shard-00000.latents.npy"]
    np.testing.assert_array_equal(shards(out)[0], before)
    assert not list(out.glob(".*tmp"))

    with pytest.raises(ValueError, match=re.escape(str(out)) + r".*differ: .*image_size"):
        encode_folder(images, out, vae_dir, image_size=16, shard_size=2, progress=False)


def test_bad_folders_fail_naming_the_path(vae_dir, tmp_path):
    def enc(folder: Path):
        encode_folder(folder, tmp_path / "out", vae_dir, image_size=SIZE, progress=False)

    missing = tmp_path / "missing"
    with pytest.raises(ValueError, match="folder not found: " + re.escape(str(missing))):
        enc(missing)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no class subfolders in " + re.escape(str(empty))):
        enc(empty)
    (empty / "cat").mkdir()
    with pytest.raises(ValueError, match="class folder has no images: " + re.escape(str(empty / "cat"))):
        enc(empty)

    images = make_folder(tmp_path / "images")
    notes = images / "dog" / "notes.txt"
    notes.write_text("not an image")
    with pytest.raises(ValueError, match="not an image file: " + re.escape(str(notes))):
        enc(images)
    notes.unlink()
    broken = images / "dog" / "f.png"
    broken.write_bytes(b"not a png")
    with pytest.raises(ValueError, match="cannot read image " + re.escape(str(broken))):
        enc(images)
    broken.unlink()
    stray = images / "labels.csv"
    stray.write_text("x")
    with pytest.raises(ValueError, match="found the file " + re.escape(str(stray))):
        enc(images)


def test_latent_dataset_reads_the_shards(encoded):
    _, out, _ = encoded
    latents, labels = shards(out)
    ds = LatentDataset(out)
    assert len(ds) == 10 and ds.classes == ["cat", "dog"]
    for i in range(len(ds)):
        x, y = ds[i]
        assert x.dtype == torch.float32 and x.shape == (4, SIZE // 2, SIZE // 2)
        np.testing.assert_array_equal(x.numpy(), latents[i])
        assert isinstance(y, int) and y == labels[i]
    np.testing.assert_array_equal(ds[-1][0].numpy(), latents[-1])
    with pytest.raises(IndexError):
        ds[10]
    assert len(pickle.dumps(ds)) < 10_000  # the memory maps are not pickled into DataLoader workers
    batch, targets = next(iter(torch.utils.data.DataLoader(ds, batch_size=4)))
    assert batch.shape == (4, 4, SIZE // 2, SIZE // 2) and targets.tolist() == labels[:4].tolist()


def test_latent_dataset_refuses_unfinished_folders(encoded, tmp_path):
    with pytest.raises(ValueError, match="has no meta.json"):
        LatentDataset(tmp_path)
    _, out, _ = encoded
    meta = json.loads((out / "meta.json").read_text())
    (tmp_path / "meta.json").write_text(json.dumps({**meta, "complete": False}))
    with pytest.raises(ValueError, match="incomplete"):
        LatentDataset(tmp_path)


def test_cli_encodes_float16_and_reports_errors(encoded, vae_dir, tmp_path, capsys):
    images, out, _ = encoded
    half = tmp_path / "half"
    argv = [str(images), str(half), "--vae", str(vae_dir), "--image-size", str(SIZE), "--dtype", "float16",
            "--no-progress"]
    assert main(argv) == 0
    assert "10 latents" in capsys.readouterr().out
    stored = np.load(half / "shard-00000.latents.npy")
    assert stored.dtype == np.float16
    np.testing.assert_allclose(LatentDataset(half)[3][0].numpy(), LatentDataset(out)[3][0].numpy(), atol=2e-3)

    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path / "nowhere"), str(half), "--vae", str(vae_dir)])
    assert exit_info.value.code == 2
    assert str(tmp_path / "nowhere") in capsys.readouterr().err
