"""P4: the cost of the in-training measurements at their default cadence, as a share of training time.

    python benchmarks/measurement_overhead.py [--steps 1000]

Trains the 33-cell swiss_roll grid (packed, EMA tangent) for `--steps` steps in a plain loop with the gradient
variance (`grad_var.every`, R replicas of B samples) and the theory diagnostics (`diagnostics.every`) at their
default cadences, and times the training steps and each measurement separately in the same run: timing three
separate runs against each other was dominated by drift between the runs (a first, cold run came out slower
than the runs that did more work).
"""
from __future__ import annotations

import argparse
import time

from hydra import compose, initialize_config_dir

from mfsweep.tasks import build_task
from mfsweep.config import CONF_DIR
from mfsweep.tasks.vector import VectorTask


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000)
    args = parser.parse_args()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=["tangent=ema"])
    cells = [(a / 10, s) for a in range(11) for s in range(3)]
    task = build_task(cfg, [a for a, _ in cells], [s for _, s in cells], cls=VectorTask)
    opt = task.configure_optimizers()
    measures = {"grad_var": (cfg.grad_var.every, task.measure_grad_var),
                "diagnostics": (cfg.diagnostics.every, task.measure_diagnostics)}
    spent = {"training": 0.0, **{name: 0.0 for name in measures}}
    counts = dict.fromkeys(measures, 0)
    for step in range(1, args.steps + 1):
        start = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        task.losses(task.draw_batch())["total"].sum().backward()
        opt.step()
        task.update_emas()
        spent["training"] += time.perf_counter() - start
        for name, (every, measure) in measures.items():
            if every and step % every == 0:
                start = time.perf_counter()
                measure()
                spent[name] += time.perf_counter() - start
                counts[name] += 1
    train = spent["training"]
    print(f"training: {train:.1f} s for {args.steps} steps ({args.steps / train:.1f} step/s, 33 members)")
    for name, (every, _) in measures.items():
        print(f"{name} every {every} steps: {counts[name]} measurements, {spent[name]:.1f} s, "
              f"{spent[name] / max(counts[name], 1):.2f} s each, overhead {100 * spent[name] / train:.1f}%")


if __name__ == "__main__":
    main()
