"""Hydra's basic sweeper, plus packed mode.

With `sweep.mode=packed`, a multirun sweep over one of `sweep.packed_keys` (alpha.value, seed, and by default
every other per-member key: trainer.lr, time.ratio, ...) is not expanded into jobs but handed to each job as one
list (`alpha.value=[0.0,0.1,...]`; `trainer.betas=[[0.9,0.99],[0.9,0.999]]`), so one process trains every
combination, e.g. lr x ratio x alpha x seed on one dataset (docs/design.md, "Execution modes"). The command line
and the sweep files are the same in both modes; other swept keys (dataset, model.width) still make one job each.

In both modes the sweep is planned first (mfsweep/sweep/launch.py): plan.json lists every cell, jobs with
nothing left to train are not submitted, and the launch ends with the sweep's status.
"""

from dataclasses import dataclass
from typing import Any, Dict, List, Optional

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from omegaconf import OmegaConf

# mfsweep's sweep code (and through it torch) is imported inside the methods: Hydra imports every plugin module
# at start-up, `mfsweep-train --help` included, which must not pay for torch.


@dataclass
class MfsweepSweeperConf:
    _target_: str = "hydra_plugins.mfsweep_sweeper.mfsweep_sweeper.MfsweepSweeper"
    max_batch_size: Optional[int] = None
    params: Optional[Dict[str, str]] = None


ConfigStore.instance().store(group="hydra/sweeper", name="mfsweep", node=MfsweepSweeperConf, provider="mfsweep")
# `${mfsweep.first:${sweep.name},mfsweep}`: the first non-null argument (conf/launcher/slurm.yaml's job name).
# Registered here because the launching process, the only one that reads hydra.launcher, imports this module.
OmegaConf.register_new_resolver("mfsweep.first", lambda *args: next((a for a in args if a is not None), None),
                                replace=True)


def pack(overrides: List[Override], keys: List[str], parser: OverridesParser) -> List[Override]:
    """Replace each discrete sweep over one of `keys` (or a key of a component group `keys` names, `alpha.*`) by
    a single list-valued override."""
    from mfsweep.sweep.cells import packs

    packed = []
    for o in overrides:
        if o.is_discrete_sweep() and packs(o.get_key_element(), keys):
            values = ",".join(str(v) for v in o.sweep_string_iterator())
            o = parser.parse_override(f"{o.get_key_element()}=[{values}]")
        packed.append(o)
    return packed


class MfsweepSweeper(BasicSweeper):
    def jobs(self, overrides: List[Override], max_batch_size: Optional[int]) -> Any:
        """Every job the command line asks for (packed mode applied), before the plan filters out finished ones;
        the CLI's preflight checks these."""
        sweep_cfg = self.config.get("sweep", {}) if self.config is not None else {}
        if sweep_cfg.get("mode", "per_run") == "packed":
            from mfsweep.cli.validate import check_packed_keys

            check_packed_keys(sweep_cfg.get("packed_keys", []))  # before any job starts
            parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
            overrides = pack(overrides, list(sweep_cfg.get("packed_keys", [])), parser)
        return BasicSweeper.split_arguments(overrides, max_batch_size)

    def split_arguments(self, overrides: List[Override], max_batch_size: Optional[int]) -> Any:  # type: ignore[override]
        batches = self.jobs(overrides, max_batch_size)
        return self.planned.select(batches, lambda o: self.hydra_context.config_loader.load_sweep_config(self.config, o))

    def sweep(self, arguments: List[str]) -> Any:
        from mfsweep.cli.status import summary
        from mfsweep.sweep.launch import PlannedLaunch

        self.planned = PlannedLaunch.from_hydra(self.config, arguments)
        try:
            with self.planned.watching():
                returns = super().sweep(arguments)
        except Exception as exc:
            from mfsweep.sweep.lock import release_all

            release_all()  # this process's jobs are over: the status must not show their cells as running
            try:
                status = summary(self.planned.root)
            except ValueError:  # no plan written yet (the error came before it): nothing to sum up
                status = ""
            self.planned.interrupted(exc, status)
            raise
        self.planned.finish(summary(self.planned.root))
        return returns
