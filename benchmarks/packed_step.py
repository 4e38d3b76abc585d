"""The packed step against a plain vmap ensemble and against the machine's matmul peak (issue 10).

    python benchmarks/packed_step.py [--members 33 --steps 20 --repeats 5 --threads 2] [--compile]

Settings of the issue: 33 members, width 128, batch 256, EMA tangent, uniform (t, r) with 75% r != t, anchor on.
Measured side by side in one run, the engines' windows interleaved (so load on a shared machine hits all alike):
- packed: the module's own step without Lightning around it (draws, loss, backward, per-member clipping, AdamW,
  both EMAs), eager and, with `--compile`, through torch.compile (`trainer.compile=true`; compile time reported);
- vmap: `benchmarks/vmap_ensemble.py`, the plain `torch.func.vmap` + `torch.func.jvp` ensemble;
- the achieved matmul rate of the packed step against `torch.bmm` at the step's own shape, and the ceiling that
  rate puts on any engine doing the step's matmuls: `step FLOPs / bmm rate` is the fastest a step can be, so
  `vmap time / that` is the largest speed-up over the comparator that is possible at all.
Reported: median member-steps/s over `--repeats` windows of `--steps` steps.
The process keeps freed memory as `mfsweep-train` does (mfsweep/tasks/allocator.py), for every engine alike, so the
comparator gets the same allocator (`--default-malloc`: glibc's defaults for all).
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from hydra import compose, initialize_config_dir

from mfsweep.tasks import build_task
from mfsweep.config import CONF_DIR
from mfsweep.tasks.allocator import keep_freed_memory
from mfsweep.tasks.vector import VectorTask
from vmap_ensemble import VmapEnsemble


def packed_task(members: int, width: int, batch: int, compile: bool) -> VectorTask:
    overrides = ["tangent=ema", "time.dist=uniform", "time.ratio=0.75", "loss.anchor_weight=0.1",
                 f"model.width={width}", f"trainer.batch_size={batch}", f"trainer.compile={str(compile).lower()}"]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    return build_task(cfg, [i / max(1, members - 1) for i in range(members)], list(range(members)), cls=VectorTask)


def packed_step(task: VectorTask):
    opt = task.configure_optimizers()

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        task.training_step(None, 0).backward()
        task.on_before_optimizer_step(opt)
        opt.step()
        task.update_emas()
    return step


def step_parts(task: VectorTask, steps: int) -> dict[str, float]:
    """Where one eager packed step's time goes, by phase (ms per step, each phase timed on its own)."""
    opt = task.configure_optimizers()
    parts: dict[str, float] = {}

    def timed(name: str, fn):
        start = time.perf_counter()
        out = fn()
        parts[name] = parts.get(name, 0.0) + (time.perf_counter() - start) * 1000 / steps
        return out
    for i in range(steps + 2):
        if i == 2:
            parts.clear()
        opt.zero_grad(set_to_none=True)
        batch = timed("per-member draws", task.draw_batch)
        losses = timed("forward (loss, JVP, proxy, anchor)", lambda: task.train_losses(batch, task.step_alpha(batch, 0)))
        timed("backward", lambda: losses["total"].sum().backward())
        timed("clipping", lambda: task.on_before_optimizer_step(opt))
        timed("AdamW", opt.step)
        timed("both EMAs", task.update_emas)
    return parts


def step_flops(members: int, width: int, batch: int, dim: int = 2, depth: int = 3) -> float:
    """Matmul FLOPs of one step: per layer, the primal and its tangent, the EMA proxy, the anchor's forward, and
    twice the forward for each backward (main and anchor): 8 passes of 2 x weights x batch per member."""
    weights = (dim + 2) * width + (depth - 1) * width * width + width * dim
    return members * 2 * weights * batch * 8


def rate(fn, steps: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    return steps / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--members", type=int, default=33)
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--compile", action="store_true")
    p.add_argument("--default-malloc", action="store_true")
    p.add_argument("--parts", action="store_true", help="also time the eager step's phases separately")
    a = p.parse_args()
    kept = not a.default_malloc and keep_freed_memory()
    torch.set_num_threads(a.threads)
    E, W, B = a.members, a.width, a.batch
    engines = {"packed": packed_step(packed_task(E, W, B, False)), "vmap": VmapEnsemble(E, width=W, batch=B).step}
    if a.compile:
        engines["packed+compile"] = packed_step(packed_task(E, W, B, True))
        start = time.perf_counter()
        engines["packed+compile"]()
        print(f"compile: {time.perf_counter() - start:.1f} s")
    h, w = torch.randn(E, B, W), torch.randn(E, W, W)
    engines["bmm"] = lambda: torch.bmm(h, w)
    for fn in engines.values():
        fn()
    rates: dict[str, list[float]] = {k: [] for k in engines}
    for _ in range(a.repeats):
        for k, fn in engines.items():
            rates[k].append(rate(fn, a.steps * (20 if k == "bmm" else 1)))
    med = {k: statistics.median(v) for k, v in rates.items()}
    peak = med.pop("bmm") * 2 * E * B * W * W / 1e9
    flops = step_flops(E, W, B)
    print(f"{E} members, width {W}, batch {B}, {a.threads} threads, torch {torch.__version__}; "
          f"bmm peak at ({E}x{B}x{W})x({W}x{W}): {peak:.1f} GFLOP/s; step matmuls {flops / 1e9:.2f} GFLOP; "
          f"freed memory {'kept' if kept else 'returned (glibc defaults)'}")
    floor = flops / 1e9 / peak
    print(f"{'matmul floor':>15}: {1000 * floor:7.1f} ms/step  (the step's matmuls at the bmm rate: at most "
          f"{1 / floor / med['vmap']:.2f}x vmap for any engine)")
    for k, r in med.items():
        print(f"{k:>15}: {1000 / r:7.1f} ms/step  {r * E:7.1f} member-steps/s  {r / med['vmap']:.2f}x vmap  "
              f"{r * flops / 1e9:6.1f} GFLOP/s = {r * flops / 1e9 / peak:.0%} of bmm peak")
    if a.parts:
        parts = step_parts(packed_task(E, W, B, False), a.steps * a.repeats)
        print("eager packed step by phase (ms): " + ", ".join(f"{k} {v:.1f}" for k, v in parts.items())
              + f"; total {sum(parts.values()):.1f}")


if __name__ == "__main__":
    main()
