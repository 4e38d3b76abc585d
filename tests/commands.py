"""The command lines the sweep tests launch: the console script, a tiny job's arguments (the basic launcher's
and the real local SLURM's tests share them) and the SLURM launcher preset."""
from __future__ import annotations

import sys
from pathlib import Path

from conftest import TINY

CLI = str(Path(sys.executable).parent / "mfsweep-train")
ARGS = [a for a in TINY if not a.startswith("logger")] + ["tangent=ema", "trainer.max_steps=20",
                                                         "diagnostics.every=0", "grad_var.every=0"]
PRESET = ["launcher=slurm", "launcher.partition=debug", "launcher.cpus_per_task=1", "launcher.mem_gb=1",
          "launcher.timeout_min=10"]
