"""The `launcher` presets (conf/launcher) without a cluster: what reaches hydra-submitit-launcher, and what a
job hands back to the launching process."""
from __future__ import annotations

import pickle

import pytest
from hydra import compose, initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from hydra_plugins.mfsweep_sweeper.mfsweep_sweeper import pack
from mfsweep.config import CONF_DIR
from mfsweep.method.errors import ConfigValueError
from mfsweep.sweep.cells import MAX_CONTEXT, context_name


def _launcher(*overrides: str) -> dict:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=list(overrides), return_hydra_config=True)
    return OmegaConf.to_container(cfg.hydra.launcher, resolve=True)


def test_slurm_preset_defaults_and_friendly_overrides_reach_submitit_slurm():
    default = _launcher("launcher=slurm")
    assert default["_target_"].endswith("submitit_launcher.SlurmLauncher")
    assert {k: default[k] for k in ("partition", "gpus_per_node", "cpus_per_task", "mem_gb", "timeout_min",
                                    "array_parallelism", "setup", "signal_delay_s", "max_num_timeout")} == {
        "partition": None, "gpus_per_node": None, "cpus_per_task": 4, "mem_gb": 16, "timeout_min": 240,
        "array_parallelism": 64, "setup": [], "signal_delay_s": 120, "max_num_timeout": 3}
    custom = _launcher("launcher=slurm", "launcher.partition=gpu", "launcher.gpus_per_node=1", "launcher.account=lab",
                       'launcher.setup=["module load cuda/12.1","export FOO=bar"]', "launcher.max_num_timeout=5",
                       "launcher.timeout_min=720", "launcher.array_parallelism=8")
    assert (custom["partition"], custom["gpus_per_node"], custom["account"], custom["max_num_timeout"],
            custom["timeout_min"], custom["array_parallelism"]) == ("gpu", 1, "lab", 5, 720, 8)
    assert custom["setup"] == ["module load cuda/12.1", "export FOO=bar"]


def test_slurm_jobs_are_named_after_the_sweep():
    assert _launcher("launcher=slurm")["name"] == "mfsweep"
    assert _launcher("launcher=slurm", "sweep.name=toy-grid")["name"] == "toy-grid"


def test_hydra_launcher_keys_still_override_the_preset():
    got = _launcher("launcher=slurm", "launcher.partition=gpu", "hydra.launcher.partition=cpu",
                    "hydra.launcher.exclude=node07", "+hydra.launcher.additional_parameters.mail-type=END")
    assert (got["partition"], got["exclude"], got["additional_parameters"]) == ("cpu", "node07", {"mail-type": "END"})


def test_local_preset_selects_submitit_local():
    got = _launcher("launcher=local", "launcher.timeout_min=30", "launcher.gpus_per_node=2")
    assert got["_target_"].endswith("submitit_launcher.LocalLauncher")
    assert (got["timeout_min"], got["gpus_per_node"]) == (30, 2)


def test_without_a_preset_the_basic_launcher_runs_the_jobs_here():
    assert _launcher()["_target_"] == "hydra._internal.core_plugins.basic_launcher.BasicLauncher"


def test_launcher_keys_do_not_change_the_cells_folders():
    cell = ["dataset=swiss_roll", "tangent=ema", "trainer.max_steps=300"]
    assert context_name(cell + ["launcher=slurm", "launcher.partition=gpu", "hydra.launcher.qos=high"]) == \
        context_name(cell) == "dataset=swiss_roll,tangent=ema,trainer.max_steps=300"


def test_a_long_context_becomes_a_short_stable_folder_name():
    many = [f"dataset.extra_key_number_{i}=value_{i}" for i in range(20)]
    name = context_name(many)
    assert len(name) == MAX_CONTEXT and name.startswith("dataset.extra_key_number_0=value_0,")
    assert name == context_name(list(reversed(many)))
    assert name != context_name(many[:-1] + ["dataset.extra_key_number_19=value_X"])


def test_packed_mode_makes_one_job_per_dataset():
    parser = OverridesParser.create()
    overrides = parser.parse_overrides(["dataset=swiss_roll,two_moons", "alpha.value=0.0,0.5,1.0", "seed=0,1"])
    jobs = BasicSweeper.split_arguments(pack(overrides, ["alpha.value", "seed"], parser), None)[0]
    assert sorted(jobs) == [
        ["dataset=swiss_roll", "alpha.value=[0.0,0.5,1.0]", "seed=[0,1]"],
        ["dataset=two_moons", "alpha.value=[0.0,0.5,1.0]", "seed=[0,1]"],
    ]


def test_a_config_error_survives_the_trip_back_from_a_job():
    """submitit pickles a job's exception for the launching process, which re-raises it."""
    error = pickle.loads(pickle.dumps(ConfigValueError("alpha.value", "must be <= 1.0, got 1.5")))
    with pytest.raises(ConfigValueError, match=r"alpha.value must be <= 1.0, got 1.5"):
        raise error
    assert error.key == "alpha.value"
