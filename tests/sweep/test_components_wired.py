"""The alpha schedules and tangent proxies as the trainer runs them (issue 12): every option from the command
line writes a record with its spec; a packed member under a schedule reproduces its single run; and adding a
schedule takes its module and its YAML only (a toy one from a temporary folder, through `--config-dir`)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from conftest import TINY, compose_cfg

from mfsweep.tasks import build_task
from mfsweep.cli.train import train

REPO = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "mfsweep.cli.entry"]
QUICK = [a for a in TINY if not a.startswith("grad_var.")] + ["grad_var.every=0", "eval.n_samples=200"]


def _cli(cwd: Path, *args: str, pythonpath: tuple[Path, ...] = ()) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("HYDRA_FULL_ERROR", "MFSWEEP_DEBUG")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *map(str, pythonpath), os.environ.get("PYTHONPATH", "")])
    return subprocess.run(CLI + list(args), cwd=cwd, capture_output=True, text=True, timeout=600, env=env)


def _records(root: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(root.rglob("result.json"))]


def test_every_schedule_trains_from_the_command_line_and_records_its_spec(tmp_path):
    schedules = ("cosine", "linear", "sigmoid", "step", "adaptive", "adaptive_h")
    proc = _cli(tmp_path, "-m", f"alpha={','.join(schedules)}", *QUICK, f"hydra.sweep.dir={tmp_path / 'out'}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = {r["alpha_schedule"]["name"]: r for r in _records(tmp_path / "out")}
    assert sorted(records) == sorted(schedules)
    for name, rec in records.items():
        assert rec["status"] == "completed" and rec["steps"] == 40 and rec["schema"] == 2
        trajectory = rec["alpha_trajectory"]
        assert rec["alpha"] == pytest.approx(trajectory["mean"]) and 0 <= trajectory["mean"] <= 1
    # the YAMLs' defaults, as the record holds them (the ramps span trainer.max_steps by interpolation)
    assert records["cosine"]["alpha_schedule"] == {"name": "cosine", "start": 0.0, "end": 1.0, "begin": 0,
                                                   "end_step": 40}
    assert records["step"]["alpha_schedule"] == {"name": "step", "milestones": [2000], "values": [0.0, 1.0]}
    assert records["linear"]["alpha_trajectory"] == {"start": 0.0, "end": pytest.approx(39 / 40),
                                                     "mean": pytest.approx(sum(range(40)) / 40 / 40)}
    assert records["adaptive"]["alpha_schedule"]["estimate"] == "scalar"


def test_every_new_proxy_trains_from_the_command_line_and_records_its_spec(tmp_path):
    proc = _cli(tmp_path, "-m", "tangent=online,velocity_head", "alpha.value=1.0", "diagnostics.every=20", *QUICK,
                f"hydra.sweep.dir={tmp_path / 'out'}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = {r["tangent"]["name"]: r for r in _records(tmp_path / "out")}
    assert records["online"]["tangent"] == {"name": "online"}
    head = records["velocity_head"]["tangent"]
    assert head["loss_weight"] == 1.0 and head["head"]["target"] == "mfsweep.models.mlp.EnsembleMLP"
    for rec in records.values():
        assert rec["status"] == "completed" and rec["alpha"] == 1.0
        assert rec["diagnostics"]["measured"]["proxy"] == rec["tangent"]["name"]
    # the head's own flow-matching loss is trained and logged beside the MeanFlow loss
    history = (tmp_path / "out").rglob("history.csv")
    head_history = next(p for p in history if "velocity_head" in str(p)).read_text().splitlines()
    assert "train/loss_proxy" in head_history[0] and "train/alpha" in head_history[0]


@pytest.mark.parametrize("schedule", [
    ["alpha=linear", "alpha.start=0.2"],
    ["alpha=adaptive", "alpha.every=10", "alpha.warmup=10", "diagnostics.batch_size=64"],
])
def test_a_packed_member_with_a_schedule_reproduces_its_single_run(tmp_path, schedule):
    packed = compose_cfg(*QUICK, *schedule, "alpha.end=[0.5,1.0]" if "alpha=linear" in schedule else
                         "alpha.smoothing=[0.0,0.5]", "seed=[0,3]")
    single = compose_cfg(*QUICK, *schedule, "alpha.end=1.0" if "alpha=linear" in schedule else
                         "alpha.smoothing=0.5", "seed=3")
    key = "alpha.end" if "alpha=linear" in schedule else "alpha.smoothing"
    by_cell = {(r["alpha_schedule"][key.split(".")[1]], r["seed"]): r for r in train(packed, tmp_path / "packed")}
    assert len(by_cell) == 4
    twin, alone = by_cell[(1.0 if key == "alpha.end" else 0.5, 3)], train(single, tmp_path / "single")[0]
    assert twin["alpha_schedule"] == alone["alpha_schedule"]
    assert twin["alpha_trajectory"] == pytest.approx(alone["alpha_trajectory"], rel=1e-5)
    assert twin["metrics"]["loss_mse"] == pytest.approx(alone["metrics"]["loss_mse"], rel=1e-4)
    assert twin["metrics"]["sw1"] == pytest.approx(alone["metrics"]["sw1"], rel=1e-4)
    if "alpha=adaptive" in schedule:  # it did adapt, from the member's own diagnostics
        assert alone["alpha_trajectory"]["end"] != alone["alpha_trajectory"]["start"]


TOY_MODULE = '''
"""A toy schedule: alpha = level until half-way, then 1 - level."""
import torch

from mfsweep.method.schedule import AlphaSchedule


class FlipAlpha(AlphaSchedule):
    name, keys, integer_keys = "flip", ("level", "at"), ("at",)

    def __init__(self, level=0.25, at=20, n_members=None):
        self._init_keys(n_members, level=level, at=at)

    def check(self):
        self._check_alpha("level")

    def bounds(self):
        return torch.minimum(self.level, 1 - self.level), torch.maximum(self.level, 1 - self.level)

    def _value(self, step):
        return torch.where(step < self.at, self.level, 1 - self.level)
'''


def test_a_new_schedule_is_its_module_and_its_yaml_only(tmp_path):
    """The structural check: a schedule from a module and a YAML outside the repository trains end to end,
    packs its own key per member, records its spec and trajectory, and checks its own key before training."""
    (tmp_path / "plugin").mkdir()
    (tmp_path / "plugin" / "toy_flip.py").write_text(textwrap.dedent(TOY_MODULE))
    (tmp_path / "conf" / "alpha").mkdir(parents=True)
    (tmp_path / "conf" / "alpha" / "flip.yaml").write_text("_target_: toy_flip.FlipAlpha\nlevel: 0.25\nat: 20\n")
    extra = ("--config-dir", str(tmp_path / "conf"))
    proc = _cli(tmp_path, *extra, "-m", "sweep.mode=packed", "alpha=flip", "alpha.level=0.1,0.3", "seed=0", *QUICK,
                f"hydra.sweep.dir={tmp_path / 'out'}", pythonpath=(tmp_path / "plugin",))
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = sorted(_records(tmp_path / "out"), key=lambda r: r["alpha_schedule"]["level"])
    assert [r["alpha_schedule"] for r in records] == [{"name": "flip", "level": 0.1, "at": 20},
                                                      {"name": "flip", "level": 0.3, "at": 20}]
    assert all(r["execution"] == {"members_in_job": 2, "mode": "packed"} for r in records)
    assert records[0]["alpha_trajectory"] == pytest.approx({"start": 0.1, "end": 0.9, "mean": 0.5})
    bad = _cli(tmp_path, *extra, "alpha=flip", "alpha.level=1.5", *QUICK, f"hydra.run.dir={tmp_path / 'bad'}",
               pythonpath=(tmp_path / "plugin",))
    assert bad.returncode == 2 and bad.stderr.strip() == "mfsweep-train: config key 'alpha.level': must be in [0, 1], got 1.5"
    assert not (tmp_path / "bad").exists()


def test_the_schedules_state_rides_in_the_checkpoint():
    """An adaptive schedule's state (its smoothed alpha, its trajectory) is saved and restored with the task."""
    from mfsweep.tasks.vector import VectorTask

    cfg = compose_cfg(*QUICK, "alpha=adaptive", "alpha.every=5", "alpha.warmup=0")
    task, twin = (build_task(cfg, [None, None], [0, 1], cls=VectorTask) for _ in range(2))
    task.schedule.alpha(3)
    task.schedule.observe(5, {"c": torch.tensor([2.0, -1.0]), "sigma2": torch.ones(2), "bias2": torch.ones(2)})
    checkpoint = {}
    task.on_save_checkpoint(checkpoint)
    twin.on_load_checkpoint(checkpoint)
    assert twin.schedule.state_dict()["state"].tolist() == task.schedule.state_dict()["state"].tolist()
    assert twin.schedule.trajectory(0) == task.schedule.trajectory(0) == {"start": 0.0, "end": 0.0, "mean": 0.0}
    assert twin.schedule.alpha(6).tolist() == task.schedule.alpha(6).tolist() != [0.0, 0.0]
