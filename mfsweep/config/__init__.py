"""The config layer: between the composed Hydra config and the objects that train (docs/extending.md).

`sections` holds the config sections as dataclasses that check their own ranges (the YAML in conf/ is the one
home of every default), `members` which keys may differ between the members of one packed process, `build` the
alpha schedule and the tangent proxy from their `_target_` YAMLs, `arguments` the MeanFlow module's arguments.
Tasks receive what these build, never the config. Nothing here imports `mfsweep.sweep`, `mfsweep.cli` or the
tasks; `sections` and `members` import neither torch nor Hydra (the command line reads them before a job runs).
"""
from __future__ import annotations

from pathlib import Path

# The config tree (conf/config.yaml and its groups): the command line's, the tests' and the benchmarks'.
CONF_DIR = Path(__file__).resolve().parents[2] / "conf"
