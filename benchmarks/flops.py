"""The machine's measured matmul FLOP/s and the MLP's FLOPs per training step (for P3's "fraction of the
machine" figure).

    python benchmarks/flops.py [--members 33 --width 128 --batch 256]

Peak: the best of float32 2048^3 matmuls and of the packed step's own batched matmul shape. Step FLOPs count
the matmuls only (2 multiply-adds per weight per sample): primal forward, tangent (JVP), backward (2x
forward), the EMA-proxy forward; elementwise work is left out, so the fraction is a lower bound on how busy
the cores are.
"""
from __future__ import annotations

import argparse
import time

import torch


def gflops(fn, flops: float, repeats: int = 20) -> float:
    for _ in range(3):
        fn()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return flops * repeats / (time.perf_counter() - start) / 1e9


def step_flops(members: int, width: int, batch: int, dim: int = 2, depth: int = 3) -> float:
    weights = (dim + 2) * width + (depth - 1) * width * width + width * dim
    forward = 2 * weights * batch
    return members * forward * (1 + 1 + 2 + 1)  # primal, tangent, backward, proxy


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--members", type=int, default=33)
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--batch", type=int, default=256)
    a = p.parse_args()
    x, y = torch.randn(2048, 2048), torch.randn(2048, 2048)
    square = gflops(lambda: x @ y, 2 * 2048**3)
    h, w = torch.randn(a.members, a.batch, a.width), torch.randn(a.members, a.width, a.width)
    packed = gflops(lambda: torch.bmm(h, w), 2 * a.members * a.batch * a.width**2, repeats=200)
    print(f"{torch.get_num_threads()} threads: sgemm 2048^3 {square:.1f} GFLOP/s, "
          f"bmm ({a.members}x{a.batch}x{a.width})x({a.width}x{a.width}) {packed:.1f} GFLOP/s")
    print(f"MeanFlow step, {a.members} members, width {a.width}, batch {a.batch}: "
          f"{step_flops(a.members, a.width, a.batch) / 1e9:.3f} GFLOP (matmuls)")


if __name__ == "__main__":
    main()
