"""`mfsweep-report SWEEP_DIR`: summarise a sweep folder's records (any mode, any launcher).

Writes `SWEEP_DIR/summary.csv` (one row per setting and alpha: mean and SEM over seeds, counts of failed,
diverged and missing cells) and prints the table.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mfsweep.sweep.aggregate import collect, summarise
from mfsweep.sweep.atomic import write_csv_atomic
from mfsweep.sweep.table import csv_rows, text_table

METRICS = ("sw1", "sw2", "fid", "grad_var")


def report(sweep_dir: Path) -> str:
    if not sweep_dir.is_dir():
        raise ValueError(f"sweep folder {sweep_dir} does not exist")
    cells = collect(sweep_dir)
    if not cells:
        raise ValueError(f"no result.json below {sweep_dir}: nothing to report")
    rows = summarise(cells, METRICS)
    table = csv_rows(rows, METRICS)
    write_csv_atomic(sweep_dir / "summary.csv", table, list(table[0]))
    return text_table(rows, METRICS)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mfsweep-report", description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", type=Path, help="a sweep folder (multirun/... or a run folder)")
    args = parser.parse_args(argv)
    try:
        print(report(args.sweep_dir))
    except ValueError as exc:
        print(f"mfsweep-report: {exc}", file=sys.stderr)
        return 2
    print(f"\nwrote {args.sweep_dir / 'summary.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
