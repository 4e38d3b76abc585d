"""`mfsweep-report SWEEP_DIR [MORE_DIR ...]`: the alpha-comparison report of a sweep folder's records (any mode,
any launcher), with the records of any further folders beside them (a schedule or proxy launched apart from
the grid it is to be compared with).

Writes `SWEEP_DIR/report.html` (one self-contained page), `SWEEP_DIR/report.md` (with its figures in
`SWEEP_DIR/report_files/`), `SWEEP_DIR/summary.csv` (one row per setting and alpha: mean and SEM over
seeds, counts of failed, diverged and missing cells) and `SWEEP_DIR/verdict.json` (each setting's answer:
better, no_better, equivalent or unresolved, with its intervals; docs/method.md 7), logs the answers and the
paired plot as a sweep-level W&B run when the cells logged to W&B, and prints, within 100 columns, the verdict
per setting, the best-alpha table and the cells that did not complete (the per-alpha grids are in the pages).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import matplotlib

from mfsweep.cli.errors import is_storage_error, reader_gone, storage_line
from mfsweep.report.page import build_report, report_text, shown_path, write_report
from mfsweep.report.verdict_run import log_verdict_run


def report(sweep_dir: Path, *more: Path, evaluation: str | None = None) -> str:
    """Build and write the report of `sweep_dir` (with `more` folders' records; from the cells' re-evaluation
    `evaluation` when given); return the console summary (ValueError for a bad folder)."""
    rep = build_report(sweep_dir, *more, evaluation=evaluation)
    paths = write_report(rep)
    run = log_verdict_run(rep)
    return (report_text(rep) + f"\n\nwrote {shown_path(paths['summary'])}, {shown_path(paths['verdict'])}, "
            f"{shown_path(paths['markdown'])}\nreport: {shown_path(paths['html'])}"
            + (f"\nW&B verdict run: {shown_path(run)}" if run else ""))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mfsweep-report", description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", type=Path, help="a sweep folder (multirun/... or a run folder); the report is "
                                                     "written into it")
    parser.add_argument("more", type=Path, nargs="*", help="further sweep folders whose records are reported beside "
                                                          "it (e.g. a schedule's sweep beside the grid's)")
    parser.add_argument("--evaluation", metavar="NAME", help="report the cells' re-evaluation NAME "
                                                             "(evaluations/NAME.json, from mfsweep-evaluate)")
    args = parser.parse_args(argv)
    matplotlib.use("Agg")  # headless: never open a window, whatever the user's default backend
    try:
        print(report(args.sweep_dir, *args.more, evaluation=args.evaluation))
    except ValueError as exc:
        print(f"mfsweep-report: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return reader_gone()
    except OSError as exc:
        if not is_storage_error(exc) or os.environ.get("MFSWEEP_DEBUG", "") not in ("", "0"):
            raise
        print(f"mfsweep-report: {storage_line(exc, 'it writes the whole report again')}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
