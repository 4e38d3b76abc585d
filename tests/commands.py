"""The command lines the sweep tests launch: the console script, a tiny job's arguments (the basic launcher's
and the real local SLURM's tests share them), a tiny race, the SLURM launcher preset, and `launch`."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import TINY

CLI = str(Path(sys.executable).parent / "mfsweep-train")
ARGS = [a for a in TINY if not a.startswith("logger")] + ["tangent=ema", "trainer.max_steps=20",
                                                         "diagnostics.every=0", "grad_var.every=0"]
PRESET = ["launcher=slurm", "launcher.partition=debug", "launcher.cpus_per_task=1", "launcher.mem_gb=1",
          "launcher.timeout_min=10"]
# A tiny race: 2 rounds of one seed (one seed decides nothing, so round 2 always runs).
ALPHAS = [0.0, 0.5, 1.0]
RACE = ["sweep.until=resolved", "sweep.mode=packed", "dataset=two_moons", "alpha.value=0.0,0.5,1.0", "seed=0",
        "sweep.round_seeds=1", "sweep.max_seeds=2"]


def launch(root: Path, *args: str) -> tuple[int, str]:
    """`mfsweep-train -m` of the tiny job with `args` into `root`: its exit status and output."""
    done = subprocess.run([CLI, "-m", *ARGS, *args, f"hydra.sweep.dir={root}"], capture_output=True, text=True,
                          timeout=600, cwd=root.parent)
    return done.returncode, done.stdout + done.stderr
