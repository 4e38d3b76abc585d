"""Check every job's config before Hydra creates an output folder or submits anything.

Hydra makes `hydra.run.dir` before it calls the task function, and a multirun's sweep folder before its first
job; its callbacks cannot stop a run (it turns their exceptions into warnings). So the command line is
composed here first, the way Hydra will compose it, and each job's config validated: a bad value leaves no
folder behind and never queues a SLURM array. Each job validates its config again when it starts.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

from hydra._internal.callbacks import Callbacks
from hydra._internal.hydra import Hydra
from hydra._internal.utils import create_config_search_path, get_args_parser
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.plugins import Plugins
from hydra.types import HydraContext, RunMode
from omegaconf import DictConfig, OmegaConf

from mfsweep.method.errors import ConfigValueError

# Flags after which Hydra prints something and trains nothing: nothing to check.
NO_JOB_FLAGS = ("help", "hydra_help", "cfg", "info", "shell_completion")


def preflight(conf_dir: Path, argv: list[str]) -> None:
    """Raise ConfigValueError (or Hydra's composition error) for the first bad job the command line would run."""
    args = get_args_parser().parse_args(argv)
    if any(getattr(args, flag) for flag in NO_JOB_FLAGS):
        return
    search_path = create_config_search_path(f"file://{conf_dir}")
    if args.config_dir is not None:  # `--config-dir sweeps --config-name toy_grid`, as Hydra does it
        search_path.prepend("command-line", f"file://{os.path.abspath(args.config_dir)}")
    GlobalHydra.instance().clear()
    hydra = Hydra.create_main_hydra2(task_name="train", config_search_path=search_path)
    try:
        name = args.config_name or "config"
        if args.multirun:
            jobs = list(job_configs(hydra, hydra.compose_config(name, args.overrides, run_mode=RunMode.MULTIRUN)))
        else:
            jobs = [hydra.compose_config(name, args.overrides, run_mode=RunMode.RUN)]
            if OmegaConf.select(jobs[0], "sweep.until") == "resolved":
                raise ConfigValueError("sweep.until", "resolved races rounds of seeds, which takes a multirun: add -m")
    finally:
        GlobalHydra.instance().clear()  # hydra.main initialises its own
    from mfsweep.cli.validate import validate  # torch and the tasks: only once the composition holds

    for job in jobs:
        validate(job)


def job_configs(hydra: Hydra, config: DictConfig) -> Iterator[DictConfig]:
    """Each job's composed config, from the overrides the sweeper will launch (packed mode included)."""
    loader = hydra.config_loader
    sweeper = Plugins.instance().instantiate_sweeper(
        config=config, hydra_context=HydraContext(config_loader=loader, callbacks=Callbacks()),
        task_function=_never_called)
    params = [f"{k}={v}" for k, v in (OmegaConf.select(config, "hydra.sweeper.params") or {}).items()]
    overrides = OverridesParser.create(config_loader=loader).parse_overrides(
        params + list(config.hydra.overrides.task))
    for batch in sweeper.jobs(overrides, None):
        for job in batch:
            yield loader.load_sweep_config(master_config=config, sweep_overrides=list(job))


def _never_called(cfg: DictConfig) -> None:
    raise AssertionError("the preflight sweeper only expands overrides; it launches nothing")
