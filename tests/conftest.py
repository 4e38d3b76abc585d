"""Shared fixtures: in-process config composition and one tiny packed sweep reused across tests.

`make test` runs the suite in two pytest-xdist workers (one per core of the CI machine). Each worker, and every
process it launches, computes on one thread, so that the two workers do not fight over the cores; the tests
that use the local SLURM run in one worker (xdist group `slurm`), which alone starts the cluster.
"""
from __future__ import annotations

import os
from pathlib import Path

if os.environ.get("PYTEST_XDIST_WORKER"):  # before torch is imported: its thread pools read these once
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

from mfsweep.cli.train import train
from mfsweep.config import CONF_DIR
from slurm_cluster import slurm_cluster  # noqa: F401  (session fixture: a real local SLURM)

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """One worker holds every test of the local SLURM: a second cluster would install and start twice."""
    for item in items:
        if "slurm_cluster" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group("slurm"))

# Small enough to train in seconds; still the real config tree, task, trainer and records.
TINY = [
    "trainer.max_steps=40", "trainer.batch_size=64", "trainer.log_every=10", "trainer.progress=false",
    "model.width=32", "eval.estimator=samples", "eval.n_samples=400", "eval.n_projections=50", "logger=csv",
    "grad_var.every=10", "grad_var.replicas=3", "grad_var.batch_size=32",
]


def compose_cfg(*overrides: str) -> DictConfig:
    """The composed config for `overrides`, exactly as `mfsweep-train` would build it (no hydra node)."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=list(overrides))


def group_yaml(group: str, name: str, **overrides) -> DictConfig:
    """`conf/<group>/<name>.yaml` as composed under a config with a trainer (for `${trainer.max_steps}`), with
    `overrides` of its own keys."""
    root = OmegaConf.create({"trainer": {"max_steps": 4000}, group: OmegaConf.load(CONF_DIR / group / f"{name}.yaml")})
    for key, value in overrides.items():
        OmegaConf.update(root, f"{group}.{key}", value)
    return root[group]


@pytest.fixture(scope="session")
def tiny_sweep(tmp_path_factory) -> Path:
    """A 3-alpha x 2-seed packed sweep on swiss_roll with the EMA tangent, trained once per session."""
    root = tmp_path_factory.mktemp("tiny_sweep")
    cfg = compose_cfg(*TINY, "tangent=ema", "alpha.value=[0.0,0.5,1.0]", "seed=[0,1]")
    train(cfg, root, "dataset=swiss_roll")
    return root
