"""`mfsweep-encode`: encode an ImageNet-layout image folder into VAE latent shards (see
`mfsweep.data.latents` for the recipe and the file layout). Re-running resumes: finished shards are skipped.

    mfsweep-encode /data/imagenet/train /data/imagenet256_latents --vae stabilityai/sd-vae-ft-ema
"""
from __future__ import annotations

import argparse
from typing import Sequence

from mfsweep.data.latents import STORAGE_DTYPES, encode_folder


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mfsweep-encode",
        description="Encode an image folder (one subfolder per class) into VAE latents (image + its flip).",
    )
    parser.add_argument("image_dir", help="folder with one subfolder of images per class")
    parser.add_argument("out_dir", help="output folder for shard-*.npy files and meta.json")
    parser.add_argument("--vae", required=True, help="diffusers AutoencoderKL: local folder or hub id")
    parser.add_argument("--image-size", type=int, default=256, help="center-crop size in pixels (default 256)")
    parser.add_argument("--scaling-factor", type=float, default=None,
                        help="latent scale (default: the VAE config's scaling_factor, 0.18215 for SD-VAE)")
    parser.add_argument("--shard-size", type=int, default=4096, help="source images per shard (default 4096)")
    parser.add_argument("--batch-size", type=int, default=32, help="source images per VAE batch (default 32)")
    parser.add_argument("--dtype", choices=STORAGE_DTYPES, default="float32", help="storage dtype of the latents")
    parser.add_argument("--device", default="cpu", help="torch device for the VAE, e.g. cuda (default cpu)")
    parser.add_argument("--num-workers", type=int, default=0, help="image decoding workers (default 0)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        summary = encode_folder(
            args.image_dir,
            args.out_dir,
            vae=args.vae,
            image_size=args.image_size,
            shard_size=args.shard_size,
            batch_size=args.batch_size,
            scaling_factor=args.scaling_factor,
            dtype=args.dtype,
            device=args.device,
            num_workers=args.num_workers,
            progress=not args.no_progress,
        )
    except ValueError as err:
        parser.exit(2, f"mfsweep-encode: error: {err}\n")
    print(
        f"{summary.count} latents in {summary.out_dir} "
        f"({summary.shards_written} shards written, {summary.shards_skipped} already complete)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
