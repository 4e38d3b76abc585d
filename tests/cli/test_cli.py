"""The `mfsweep-train` command line as a newcomer meets it: the help, config errors as one line with exit
status 2 and no folder left behind, typo suggestions, the default tangent, progress lines when piped."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TINY, compose_cfg
from hydra.errors import ConfigCompositionException

from mfsweep.config import CONF_DIR
from mfsweep.cli.errors import one_line
from mfsweep.cli.validate import validate

ENTRY = [sys.executable, "-m", "mfsweep.cli.entry"]
REPO = Path(__file__).resolve().parents[2]


def _run(cwd: Path, *args: str, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """The CLI in `cwd` (where Hydra would put runs/ and multirun/), with this checkout first on the path."""
    environ = {k: v for k, v in os.environ.items() if k not in ("HYDRA_FULL_ERROR", "MFSWEEP_DEBUG")}
    environ |= {"PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"} | (env or {})
    return subprocess.run(ENTRY + list(args), cwd=cwd, capture_output=True, text=True, timeout=timeout, env=environ)


def test_help_starts_with_a_description_and_worked_examples_then_the_groups(tmp_path):
    proc = _run(tmp_path, "--help")
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    assert text.startswith("mfsweep-train: train MeanFlow")
    examples = text.index("Examples:")
    for example in ("mfsweep-train dataset=swiss_roll alpha.value=0.5",          # a single cell
                    "mfsweep-train -m dataset=swiss_roll alpha.value=0.0,0.5,1.0",  # a multirun grid
                    "sweep.mode=packed", "launcher=slurm"):
        assert text.index(example) > examples, example
    groups = text.index("== Configuration groups ==")
    assert groups > text.index("launcher=slurm")
    assert "tangent: conditional, ema, online, oracle, velocity_head" in text[groups:]
    assert "alpha: adaptive, adaptive_h, constant, cosine, linear, sigmoid, step" in text[groups:]
    assert not any(tmp_path.iterdir())


def test_help_imports_neither_torch_nor_lightning(tmp_path):
    """`--help` answers without the training stack: Hydra imports every plugin at start-up, so the packed-mode
    sweeper must import mfsweep's sweep code (and with it torch) only when it sweeps. Module names from
    `python -X importtime`, which lists every import the process made."""
    proc = subprocess.run([sys.executable, "-X", "importtime", *ENTRY[1:], "--help"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300,
                          env=os.environ | {"PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"})
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    assert proc.returncode == 0 and "omegaconf" in imported, proc.stderr[-2000:]  # the listing is there
    assert not {"torch", "lightning", "wandb"} & imported, sorted({"torch", "lightning", "wandb"} & imported)


@pytest.mark.parametrize("args,line", [
    (["alpha.value=2"], "mfsweep-train: config key 'alpha.value': must be in [0, 1], got 2"),
    (["-m", "alpha.value=0.0,2", "seed=0,1"], "mfsweep-train: config key 'alpha.value': must be in [0, 1], got 2"),
    # the components check their own keys (mfsweep/method), through the same one-line path
    (["alpha=linear", "alpha.end=2"], "mfsweep-train: config key 'alpha.end': must be in [0, 1], got 2"),
    (["alpha=adaptive", "alpha.every=0"], "mfsweep-train: config key 'alpha.every': must be a positive integer, got 0"),
    (["tangent=velocity_head", "alpha.value=1.5"], "mfsweep-train: config key 'alpha.value': must be in [0, 1], got 1.5"),
    (["-m", "sweep.mode=packed", "alpha=cosine", "alpha.end=0.5,2", "seed=0,1"],
     "mfsweep-train: config key 'alpha.end': must be in [0, 1], got 2"),
    (["tangent=conditional", "alpha=cosine"], "mfsweep-train: config key 'alpha': alpha=cosine reaches alpha 1.0, "
                                             "but tangent=conditional has no proxy to mix in (alpha must be 0)"),
    (["tangent=oracle"], "mfsweep-train: config key 'tangent': tangent=oracle needs a dataset with an exact posterior"),
    (["datset=swiss_roll"], "mfsweep-train: config key 'datset' is not in the config: did you mean dataset?"),
    (["-m", "dataset=swiss_roll,two_moonz"],
     "mfsweep-train: config group 'dataset': no option 'two_moonz': did you mean two_moons? (options: "),
])
def test_a_config_error_is_one_line_exit_2_and_leaves_no_folder(tmp_path, args, line):
    proc = _run(tmp_path, *args, "logger=none")
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    assert len(proc.stderr.splitlines()) == 1 and proc.stderr.startswith(line), proc.stderr
    assert "Traceback" not in proc.stderr and "+datset" not in proc.stderr
    assert not any(tmp_path.iterdir()), sorted(tmp_path.rglob("*"))


def test_mfsweep_debug_shows_the_traceback(tmp_path):
    proc = _run(tmp_path, "alpha.value=2", env={"MFSWEEP_DEBUG": "1"})
    assert proc.returncode == 1
    assert "Traceback" in proc.stderr and "ConfigValueError: alpha.value must be in [0, 1], got 2" in proc.stderr


def test_a_nested_typo_suggests_the_nearest_key():
    with pytest.raises(ConfigCompositionException) as err:
        compose_cfg("trainer.max_step=5")
    assert one_line(err.value, CONF_DIR, ["trainer.max_step=5"]) == (
        "config key 'trainer.max_step' is not in the config: did you mean trainer.max_steps?")


def test_the_default_tangent_accepts_every_alpha():
    cfg = compose_cfg("alpha.value=[0.0,0.5,1.0]")
    assert cfg.tangent._target_ == "mfsweep.method.proxy.EMAProxy"
    validate(cfg)


def test_progress_lines_when_piped(tmp_path):
    """Not a terminal: plain lines at every 10% of the steps (here every 4 of 40) and a last one at 40/40."""
    args = [a for a in TINY if not a.startswith("trainer.progress")]
    proc = _run(tmp_path, *args, "trainer.progress=true", "alpha.value=0.5", f"hydra.run.dir={tmp_path / 'run'}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    steps = [int(s) for s in re.findall(r"step (\d+)/40 \(\d+%\), [\d.]+ step/s, ETA \S+, members 1/1", proc.stdout)]
    assert len(steps) >= 5 and steps == sorted(steps) and steps[-1] == 40, proc.stdout
