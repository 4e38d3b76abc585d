"""`mfsweep-evaluate SWEEP_DIR [eval.KEY=VALUE ...] [--name NAME] [--defaults]`: evaluate a finished sweep's
completed cells again from their jobs' final checkpoints, without training (mfsweep/sweep/reevaluate.py).

Each job's members are evaluated in one pass; each completed cell gets `evaluations/<NAME>.json` (NAME from
the overrides unless given), which `mfsweep-report SWEEP_DIR --evaluation NAME` reports from. Keys not
overridden keep each cell's training-time value; `--defaults` starts from today's defaults
(conf/config.yaml's `eval`) instead, which is how records written before an estimator existed get it.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from omegaconf import OmegaConf

from mfsweep.cli.entry import CONF_DIR
from mfsweep.cli.errors import reader_gone


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mfsweep-evaluate", description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", type=Path)
    parser.add_argument("overrides", nargs="*", help="eval.KEY=VALUE: the evaluation settings to change")
    parser.add_argument("--name", help="the evaluation's name (default: the overrides)")
    parser.add_argument("--defaults", action="store_true",
                        help="start from today's default evaluation settings rather than each cell's own")
    args = parser.parse_intermixed_args(argv)
    from mfsweep.sweep.reevaluate import evaluate_job, evaluation_name, evaluation_path, jobs

    name = args.name or evaluation_name(args.overrides + (["defaults"] if args.defaults else []))
    defaults = None
    if args.defaults:
        defaults = OmegaConf.load(CONF_DIR / "config.yaml").eval
    logging.basicConfig(level=logging.WARNING)
    try:
        if not args.sweep_dir.is_dir():
            raise ValueError(f"{args.sweep_dir}: no such sweep folder")
        found = jobs(args.sweep_dir)
        if not found:
            raise ValueError(f"{args.sweep_dir}: no completed cells to evaluate")
        done: set = set()
        for ckpt, cells in found:
            written = evaluate_job(ckpt, cells, args.overrides, name, defaults, skip=done)
            done.update(c for c in cells if evaluation_path(c, name) in written)
        n = len(done)
        print(f"evaluated {n} cells of {len(found)} jobs as {name!r}: report with "
              f"`mfsweep-report {args.sweep_dir} --evaluation {name}`")
    except ValueError as exc:
        print(f"mfsweep-evaluate: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return reader_gone()
    return 0


if __name__ == "__main__":
    sys.exit(main())
