"""The `mfsweep-train` console entry: Hydra's command line, with config errors as one line and exit status 2.

Kept light so that `--help` answers at once: training code (torch, Lightning) is imported only when a job
runs. A write the file system refuses (full, I/O error, read-only) ends the run with one line naming the file
and exit status 1: the same command resumes once the cause is fixed. `MFSWEEP_DEBUG=1` (or Hydra's own
`HYDRA_FULL_ERROR=1`) lets either error through with its traceback.
"""
from __future__ import annotations

import os
import sys

import hydra
from omegaconf import DictConfig

from mfsweep.cli.errors import is_config_error, is_storage_error, one_line, storage_line
from mfsweep.cli.preflight import preflight
from mfsweep.config import CONF_DIR

EXIT_CONFIG = 2  # the conventional status of a command-line usage error
EXIT_STORAGE = 1
DEBUG_VARIABLES = ("MFSWEEP_DEBUG", "HYDRA_FULL_ERROR")


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def run_job(cfg: DictConfig) -> None:
    from mfsweep.cli.train import train_job  # heavy imports, only once a job runs

    train_job(cfg)


def main() -> None:
    debug = any(os.environ.get(name, "") not in ("", "0") for name in DEBUG_VARIABLES)
    # Without HYDRA_FULL_ERROR Hydra prints its own multi-line report and exits 1 before we see the error.
    saved = os.environ.get("HYDRA_FULL_ERROR")
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        preflight(CONF_DIR, sys.argv[1:])  # before Hydra creates any output folder
        run_job()
    except Exception as err:
        if debug or not (is_config_error(err) or is_storage_error(err)):
            raise
        if is_storage_error(err):
            print(f"mfsweep-train: {storage_line(err)}", file=sys.stderr)
            raise SystemExit(EXIT_STORAGE) from None
        print(f"mfsweep-train: {one_line(err, CONF_DIR, sys.argv[1:])}", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG) from None
    finally:
        if saved is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = saved


if __name__ == "__main__":
    main()
