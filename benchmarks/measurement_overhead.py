"""P4: the cost of the in-training measurements at their default cadence, as a share of training time.

    python benchmarks/measurement_overhead.py [--steps 1000]

Trains the 33-cell swiss_roll grid (packed, EMA tangent) for `--steps` steps in a plain loop three times:
without measurements, with the gradient variance at its default cadence (`grad_var.every`, R replicas of
B samples), and with the theory diagnostics at theirs (`diagnostics.every`). Reports seconds and overhead.
"""
from __future__ import annotations

import argparse
import time

from hydra import compose, initialize_config_dir

from mfsweep.cli.train import CONF_DIR
from mfsweep.method.ema import ema_update
from mfsweep.tasks.vector import VectorTask


def run(steps: int, measure: str | None) -> tuple[float, int]:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=["tangent=ema"])
    cells = [(a / 10, s) for a in range(11) for s in range(3)]
    task = VectorTask.from_config(cfg, [a for a, _ in cells], [s for _, s in cells])
    opt = task.configure_optimizers()
    every = {"grad_var": cfg.grad_var.every, "diagnostics": cfg.diagnostics.every}.get(measure or "", 0)
    start, n = time.perf_counter(), 0
    for step in range(1, steps + 1):
        opt.zero_grad(set_to_none=True)
        task.losses(task.draw_batch())["total"].sum().backward()
        opt.step()
        ema_update(list(task.ema.parameters()), list(task.model.parameters()), 0.999)
        ema_update(list(task.proxy_model.parameters()), list(task.model.parameters()), 0.99)
        if every and step % every == 0:
            task.measure_grad_var() if measure == "grad_var" else task.measure_diagnostics()
            n += 1
    return time.perf_counter() - start, n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000)
    args = parser.parse_args()
    base, _ = run(args.steps, None)
    print(f"training only: {base:.1f} s for {args.steps} steps")
    for measure in ("grad_var", "diagnostics"):
        t, n = run(args.steps, measure)
        print(f"with {measure} ({n} measurements): {t:.1f} s, overhead {100 * (t - base) / base:.1f}%")


if __name__ == "__main__":
    main()
