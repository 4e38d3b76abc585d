"""A hyperparameter study packed into one process vs one job per setting (issue 10).

    python benchmarks/hparam_study.py [--steps 300] [--out /tmp/hparam_study]

4 learning rates x 3 r != t ratios x 3 seeds on two_moons (EMA tangent, alpha 0.5), the same 36 cells two ways
through `mfsweep-train -m` with Hydra's basic launcher, end to end (start-up, training, evaluation, records):
- packed: `sweep.mode=packed` with the default `sweep.packed_keys`: one process trains all 36 members;
- per setting: `sweep.packed_keys=[alpha.value,seed]`: 12 jobs (one per lr x ratio), each packing its 3 seeds,
  which is what packed mode did before per-member hyperparameters.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

STUDY = ["dataset=two_moons", "tangent=ema", "alpha.value=0.5", "seed=0,1,2", "trainer.lr=3e-4,1e-3,3e-3,1e-2",
         "time.ratio=0.25,0.5,0.75", "sweep.mode=packed", "logger=csv", "trainer.progress=false",
         "trainer.checkpoint_every=0", "trainer.compile=false"]


def run(out: Path, steps: int, extra: list[str]) -> float:
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "mfsweep.cli.entry", "-m", *STUDY, f"trainer.max_steps={steps}",
           f"hydra.sweep.dir={out}", *extra]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    elapsed = time.perf_counter() - start
    assert len(list(out.rglob("result.json"))) == 36
    return elapsed


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--out", type=Path, default=Path("/tmp/hparam_study"))
    a = p.parse_args()
    packed = run(a.out / "packed", a.steps, [])
    per_setting = run(a.out / "per_setting", a.steps, ["sweep.packed_keys=[alpha.value,seed]"])
    print(f"36 cells, {a.steps} steps: packed (1 process) {packed:.1f} s, one job per setting (12 jobs) "
          f"{per_setting:.1f} s, speed-up {per_setting / packed:.1f}x")


if __name__ == "__main__":
    main()
