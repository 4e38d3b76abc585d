"""Hydra's basic sweeper, plus packed mode.

With `sweep.mode=packed`, a multirun sweep over one of `sweep.packed_keys` (alpha.value, seed, and by default
every other per-member key: trainer.lr, time.ratio, ...) is not expanded into jobs but handed to each job as one
list (`alpha.value=[0.0,0.1,...]`; `trainer.betas=[[0.9,0.99],[0.9,0.999]]`), so one process trains every
combination, e.g. lr x ratio x alpha x seed on one dataset (docs/design.md, "Execution modes"). The command line
and the sweep files are the same in both modes; other swept keys (dataset, model.width) still make one job each.

With `sweep.until=resolved` the sweep is a race (mfsweep/sweep/race.py): round 1 is the command line's jobs; each
later round trains new seeds of the alphas still racing, one job per setting (packed or per cell as the mode
says), until every setting's answer is resolved or `sweep.max_seeds` is reached.

In both modes the sweep is planned first (mfsweep/sweep/launch.py): plan.json lists every cell, jobs with
nothing left to train are not submitted, and the launch ends with the sweep's status.
"""

from dataclasses import dataclass
from pathlib import Path
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
    from mfsweep.config.members import packs

    packed = []
    for o in overrides:
        if o.is_discrete_sweep() and packs(o.get_key_element(), keys):
            values = ",".join(str(v) for v in o.sweep_string_iterator())
            o = parser.parse_override(f"{o.get_key_element()}=[{values}]")
        packed.append(o)
    return packed


def swept_values(overrides: List[Override], key: str, default: Any) -> List[Any]:
    """The values the command line gives `key` (a sweep, a list, or one value), else `default`'s. The last override
    of `key` wins, as in the jobs Hydra makes: a sweep file's `hydra.sweeper.params` come first and the command
    line after them (`--config-name toy_grid seed=0,1,2` races seeds 0-2, not the file's 0-5)."""
    for o in reversed(overrides):
        if o.get_key_element().lstrip("+~") == key:
            value = list(o.sweep_iterator()) if o.is_discrete_sweep() else o.value()
            return list(value) if isinstance(value, list) else [value]
    default = OmegaConf.to_container(default) if OmegaConf.is_config(default) else default
    return list(default) if isinstance(default, list) else [default]


class MfsweepSweeper(BasicSweeper):
    spec: Any = None  # the race's RaceSpec, once checked

    def race_spec(self, overrides: List[Override]) -> Any:
        """The race the command line asks for (sweep.until=resolved), or ConfigValueError naming the key."""
        from mfsweep.sweep.race import check_race

        cfg = self.config
        return check_race(str(OmegaConf.select(cfg, "alpha._target_")),
                          swept_values(overrides, "alpha.value", OmegaConf.select(cfg, "alpha.value")),
                          swept_values(overrides, "seed", OmegaConf.select(cfg, "seed")),
                          OmegaConf.select(cfg, "sweep.round_seeds"), OmegaConf.select(cfg, "sweep.max_seeds"),
                          OmegaConf.select(cfg, "verdict.margin"))

    def jobs(self, overrides: List[Override], max_batch_size: Optional[int]) -> Any:
        """Every job the command line asks for (packed mode applied), before the plan filters out finished ones;
        the CLI's preflight checks these (and a race's keys)."""
        sweep_cfg = self.config.get("sweep", {}) if self.config is not None else {}
        if sweep_cfg.get("until", "grid") == "resolved" and self.spec is None:
            self.spec = self.race_spec(overrides)
        if sweep_cfg.get("mode", "per_run") == "packed":
            from mfsweep.config.members import packed_keys

            keys = packed_keys(sweep_cfg)  # checked before any job starts
            parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
            overrides = pack(overrides, keys, parser)
        return BasicSweeper.split_arguments(overrides, max_batch_size)

    def split_arguments(self, overrides: List[Override], max_batch_size: Optional[int]) -> Any:  # type: ignore[override]
        batches = self.jobs(overrides, max_batch_size)
        return self.planned.select(batches, lambda o: self.hydra_context.config_loader.load_sweep_config(self.config, o))

    def sweep(self, arguments: List[str]) -> Any:
        from mfsweep.sweep.status import summary
        from mfsweep.sweep.launch import PlannedLaunch

        self.planned = PlannedLaunch.from_hydra(self.config, arguments)
        racing = self.config.sweep.get("until", "grid") == "resolved"
        try:
            with self.planned.watching():
                returns = self.race(arguments) if racing else super().sweep(arguments)
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

    def launch_round(self, batches: List[List[List[str]]], job_idx: int) -> List[Any]:
        """Run a round's batches as BasicSweeper.sweep runs its own; raise if a job raised."""
        returns = []
        for batch in batches:
            self.validate_batch_is_legal(batch)
            results = self.launcher.launch(batch, initial_job_idx=job_idx)
            for r in results:
                _ = r.return_value
            job_idx += len(batch)
            returns.append(results)
        return returns

    def race(self, arguments: List[str]) -> Any:
        """Rounds of seeds until every setting is resolved (mfsweep/sweep/race.py). Decided rounds are read
        back from plan.json, never decided again: a relaunch trains (or resumes) only the first undecided
        round's cells, then goes on."""
        from mfsweep.sweep.race import check_same_race
        from mfsweep.report.rounds import decide_round
        from mfsweep.sweep import race as rc

        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        overrides = parser.parse_overrides(self._parse_config() + list(arguments))
        spec = self.spec = self.race_spec(overrides)
        root = Path(self.config.hydra.sweep.dir)
        root.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, root / "multirun.yaml")
        compose = lambda o: self.hydra_context.config_loader.load_sweep_config(self.config, o)  # noqa: E731

        first = self.planned.select(self.jobs(overrides, self.max_batch_size), compose)
        settings = rc.setting_overrides(self.planned.entries)
        race = self.planned.plan.get("race") or {"spec": spec.to_dict(), "settings": settings, "rounds": []}
        check_same_race(root, {k: race[k] for k in ("spec", "settings")}, {"spec": spec.to_dict(), "settings": settings})
        self.planned.set_race(race)
        returns, job_idx = [], 0
        while (step := rc.next_round(race, settings)) is not None:
            seeds, alphas = step
            if race["rounds"]:
                jobs = [job for line in rc.round_jobs(settings, seeds, alphas)
                        for batch in self.jobs(parser.parse_overrides(line), None) for job in batch]
                batches = self.planned.select(list(self.split_overrides_to_chunks(jobs, self.max_batch_size)), compose)
            else:
                batches = first
            started = rc.now()
            returns += self.launch_round(batches, job_idx)
            job_idx += sum(len(b) for b in batches)
            decided = decide_round(root, race, seeds, alphas) | {"started": started, "decided": rc.now()}
            race = race | {"rounds": race["rounds"] + [decided]}
            self.planned.set_race(race)
        return returns
