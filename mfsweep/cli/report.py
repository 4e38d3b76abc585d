"""`mfsweep-report SWEEP_DIR`: the alpha-comparison report of a sweep folder's records (any mode, any launcher).

Writes `SWEEP_DIR/report.html` (one self-contained page), `SWEEP_DIR/report.md` (with its figures in
`SWEEP_DIR/report_files/`) and `SWEEP_DIR/summary.csv` (one row per setting and alpha: mean and SEM over
seeds, counts of failed, diverged and missing cells), and prints, within 100 columns, the verdict per setting,
the best-alpha table and the cells that did not complete (the per-alpha grids are in the pages).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

from mfsweep.sweep.report import build_report, report_text, shown_path, write_report


def report(sweep_dir: Path) -> str:
    """Build and write the report of `sweep_dir`; return the console summary (ValueError for a bad folder)."""
    rep = build_report(sweep_dir)
    paths = write_report(rep)
    return (report_text(rep) + f"\n\nwrote {shown_path(paths['summary'])}, "
            f"{shown_path(paths['markdown'])}\nreport: {shown_path(paths['html'])}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mfsweep-report", description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", type=Path, help="a sweep folder (multirun/... or a run folder)")
    args = parser.parse_args(argv)
    matplotlib.use("Agg")  # headless: never open a window, whatever the user's default backend
    try:
        print(report(args.sweep_dir))
    except ValueError as exc:
        print(f"mfsweep-report: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
