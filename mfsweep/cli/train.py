"""`mfsweep-train`: train one grid cell, or a packed grid of cells, and write their records.

    mfsweep-train dataset=swiss_roll tangent=ema alpha.value=0.5 seed=1 trainer.max_steps=300
    mfsweep-train -m dataset=swiss_roll tangent=ema alpha.value=0.0,0.5,1.0 seed=0,1            # a job per cell
    mfsweep-train -m sweep.mode=packed dataset=swiss_roll tangent=ema alpha.value=0.0,0.5,1.0 seed=0,1  # one job
    mfsweep-train -m sweep.mode=packed dataset=two_moons tangent=ema alpha.value=0.0,1.0 seed=0,1 \
        trainer.lr=1e-3,3e-3 time.ratio=0.25,0.75                                                 # 16 cells, one job
    mfsweep-train dataset=two_moons alpha=cosine alpha.end=0.8 tangent=velocity_head             # a schedule, a proxy

The entry point only validates the job's config and hands it to the runner (mfsweep/sweep/runner.py), which
owns each cell's lifecycle and record. Heavy libraries are imported there, so `--help` and a config error answer
quickly.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from mfsweep.cli.validate import validate
from mfsweep.config.members import packed_keys
from mfsweep.sweep.cells import context_name
from mfsweep.sweep.runner import run

def train(cfg: DictConfig, root: Path, context: str = "", overrides: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Validate the job's config, then train its cells under `root/context` (`runner.run`) and return their
    records."""
    validate(cfg)
    return run(cfg, root, context, overrides)


def train_job(cfg: DictConfig) -> None:
    """One Hydra job: its cells live under the run or sweep folder, in the context of its other overrides."""
    hc = HydraConfig.get()
    multirun = hc.mode == RunMode.MULTIRUN
    root = Path(hc.sweep.dir if multirun else hc.run.dir)
    overrides = list(hc.overrides.task)
    train(cfg, root, context_name(overrides, packed_keys(cfg.sweep)), overrides)

