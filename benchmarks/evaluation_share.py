"""What share of a toy-grid job the evaluation takes: one packed 33-member job (11 alphas x 3 seeds) of
sweeps/toy_grid.yaml, its training steps and its final evaluation timed side by side in one process.

    OMP_NUM_THREADS=1 python benchmarks/evaluation_share.py                 # the default (quantile) estimator
    OMP_NUM_THREADS=1 python benchmarks/evaluation_share.py --estimator samples

The training time is `--steps` packed steps (the module's own step, packed_step.py) scaled to the recipe's
steps; the evaluation is `task.evaluate(**cfg.eval)` at the sweep file's sizes, plus the `eval/sw1`
checkpoint curve at its cadence. The share printed is evaluation / (training + evaluation), both measured here,
so machine load cancels to first order. Lightning, logging and gradient-variance measurement are left out of
the training side, which makes the share an upper bound.
"""
from __future__ import annotations

import argparse
import time

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="eight_gaussians")
    parser.add_argument("--steps", type=int, default=300, help="steps timed (scaled to the recipe's)")
    parser.add_argument("--estimator", default=None, help="eval.estimator (default: the config's)")
    args = parser.parse_args()
    from hydra import compose, initialize_config_dir

    from mfsweep.config import CONF_DIR
    from mfsweep.tasks import build_task
    from mfsweep.tasks.allocator import keep_freed_memory
    from packed_step import packed_step

    keep_freed_memory()  # as each mfsweep-train process does
    # sweeps/toy_grid.yaml is the defaults with the EMA tangent, swept over dataset x alpha x seed
    overrides = ["tangent=ema", f"dataset={args.dataset}"] + ([f"eval.estimator={args.estimator}"] if args.estimator else [])
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    members = [(a / 10, s) for a in range(11) for s in range(3)]
    task = build_task(cfg, [a for a, _ in members], [s for _, s in members])
    step = packed_step(task)
    step()  # first-call costs out of the timing
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    train = (time.perf_counter() - start) * cfg.trainer.max_steps / args.steps
    start = time.perf_counter()
    task.evaluate(**cfg.eval)
    final = time.perf_counter() - start
    start = time.perf_counter()
    task.evaluate_during_training()
    curve = (time.perf_counter() - start) * (cfg.trainer.max_steps // cfg.eval.every if cfg.eval.every else 0)
    evaluation = final + curve
    print(f"{args.dataset}, 33 members, {cfg.eval.estimator} estimator ({cfg.eval.n_samples} points, "
          f"{cfg.eval.n_projections} directions), torch {torch.__version__}, {torch.get_num_threads()} thread(s): "
          f"training {train:.0f} s ({cfg.trainer.max_steps} steps), final evaluation {final:.1f} s, checkpoint "
          f"curve {curve:.1f} s: evaluation {100 * evaluation / (train + evaluation):.1f}% of the job")


if __name__ == "__main__":
    main()
