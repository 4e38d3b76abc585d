"""`mfsweep-status SWEEP_DIR`: where a sweep stands against its plan (plan.json): the planned cells by state,
a table per setting, a race's rounds and answers (sweep.until=resolved), and the exact command that resumes or
retrains what is left.

    mfsweep-status multirun/2026-11-30/10-00-00
    mfsweep-status multirun/2026-11-30/10-00-00 --watch      # refresh every 10 s while cells run
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from mfsweep.cli.errors import reader_gone
from mfsweep.sweep.status import still_running, summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mfsweep-status", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[2:]))
    parser.add_argument("sweep_dir", type=Path, help="the sweep folder (hydra.sweep.dir) holding plan.json")
    parser.add_argument("--watch", action="store_true", help="refresh while cells run or wait in the queue")
    parser.add_argument("--every", type=float, default=10.0, help="seconds between refreshes with --watch")
    args = parser.parse_args(argv)
    try:
        while True:
            text = summary(args.sweep_dir)
            print(text, flush=True)
            if not args.watch or not still_running(args.sweep_dir):
                return 0
            time.sleep(args.every)
            print(flush=True)
    except ValueError as exc:
        print(f"mfsweep-status: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return reader_gone()


if __name__ == "__main__":
    sys.exit(main())
