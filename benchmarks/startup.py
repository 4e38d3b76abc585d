"""Start-up time of `mfsweep-train` (issue 10): `--help`, and a one-step toy cell with logger=csv.

    python benchmarks/startup.py [--repeats 3]

The toy cell trains 1 step and evaluates on 100 samples, so its wall time is start-up (imports, config
composition, task construction, Lightning's set-up) plus a negligible step and evaluation; `to train` is the
time until the module's first training step starts, read from the `MFSWEEP_STARTUP_PROBE` line it prints.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time

PROBE = ("import sys, time, runpy; t0 = time.perf_counter(); "
         "from mfsweep.tasks.meanflow import MeanFlowModule as M; f = M.training_step; "
         "M.training_step = lambda *a: (print(f'MFSWEEP_STARTUP_PROBE {time.perf_counter() - t0:.3f}', flush=True), "
         "setattr(M, 'training_step', f), f(*a))[-1]; "
         "sys.argv = ['mfsweep-train'] + sys.argv[1:]; runpy.run_module('mfsweep.cli.train', run_name='__main__')")


def wall(cmd: list[str]) -> tuple[float, str]:
    start = time.perf_counter()
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return time.perf_counter() - start, out.stdout


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args()
    helps, cells, probes = [], [], []
    for _ in range(a.repeats):
        helps.append(wall([sys.executable, "-m", "mfsweep.cli.entry", "--help"])[0])  # the console script
        with tempfile.TemporaryDirectory() as out:
            t, stdout = wall([sys.executable, "-c", PROBE, "dataset=two_moons", "trainer.max_steps=1", "logger=csv",
                              "eval.n_samples=100", "eval.n_projections=10", "grad_var.every=0", "diagnostics.every=0",
                              "trainer.progress=false", f"hydra.run.dir={out}"])
        cells.append(t)
        probes.append(float(next(line for line in stdout.splitlines() if "MFSWEEP_STARTUP_PROBE" in line).split()[-1]))
    # The probe's clock starts after the interpreter itself is up: add its bare start-up.
    python = statistics.median(wall([sys.executable, "-c", "pass"])[0] for _ in range(a.repeats))
    print(f"median of {a.repeats}: --help {statistics.median(helps):.2f} s; toy cell (1 step, logger=csv) "
          f"{statistics.median(cells):.2f} s end to end, {statistics.median(probes) + python:.2f} s to its first "
          f"training step (bare python {python:.2f} s)")


if __name__ == "__main__":
    main()
