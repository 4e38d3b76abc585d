"""P1: the 33-cell swiss_roll grid (11 alphas x 3 seeds) at equal steps, packed vs per-run.

    python benchmarks/packed_vs_per_run.py [--steps 1000] [--out benchmarks/out/p1]

Three ways to train the same 33 cells, each timed end to end as a user would run it:
- packed: `mfsweep-train -m sweep.mode=packed ...` (one process, one stacked ensemble);
- per-run: `mfsweep-train -m ...` with Hydra's basic launcher (33 jobs, one after another, in one process);
- loop: the 33 single-member models trained one after another in a plain Python loop (no Lightning, no
  evaluation): the training cost alone, against packed training alone (`--loop-only`).
Evaluation (10k samples, SW with 1000 directions) is the same work in both CLI modes.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch

ALPHAS = "0.0,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1.0"


def cli(out: Path, steps: int, packed: bool) -> float:
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "mfsweep.cli.entry", "-m", "dataset=swiss_roll", "tangent=ema", f"alpha.value={ALPHAS}",
           "seed=0,1,2", f"trainer.max_steps={steps}", "logger=csv", "trainer.progress=false",
           "trainer.checkpoint_every=0", f"hydra.sweep.dir={out}"] + (["sweep.mode=packed"] if packed else [])
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - start


def train_only(steps: int, members: list[tuple[float, int]]) -> float:
    """Plain loop: `steps` optimizer steps of a VectorTask holding `members`, no Lightning around it."""
    from hydra import compose, initialize_config_dir

    from mfsweep.config import CONF_DIR
    from mfsweep.tasks import build_task
    from mfsweep.tasks.vector import VectorTask
    from packed_step import packed_step

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=["tangent=ema", "grad_var.every=0"])
    task = build_task(cfg, [a for a, _ in members], [s for _, s in members], cls=VectorTask)
    step = packed_step(task)  # the module's own step: draws, loss, backward, clipping, AdamW, both EMAs
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/p1"))
    parser.add_argument("--loop-only", action="store_true", help="only the training-loop comparison")
    args = parser.parse_args()
    from mfsweep.tasks.allocator import keep_freed_memory

    keep_freed_memory()  # as each mfsweep-train process does
    cells = [(a / 10, s) for a in range(11) for s in range(3)]
    packed_loop = train_only(args.steps, cells)
    single_loop = sum(train_only(args.steps, [c]) for c in cells)
    print(f"training only, {args.steps} steps: packed {packed_loop:.1f} s, loop over 33 models {single_loop:.1f} s, "
          f"speed-up {single_loop / packed_loop:.1f}x")
    if args.loop_only:
        return
    packed = cli(args.out / "packed", args.steps, True)
    per_run = cli(args.out / "per_run", args.steps, False)
    print(f"CLI end to end, {args.steps} steps: packed {packed:.1f} s, per-run {per_run:.1f} s, "
          f"speed-up {per_run / packed:.1f}x  (torch {torch.__version__}, {torch.get_num_threads()} threads)")


if __name__ == "__main__":
    main()
