"""A sweep that knows its plan, launched here (Hydra's basic launcher): plan.json lists every cell, a relaunch
submits only what is left and exits non-zero when it leaves failed cells untrained, a sweep over a key the
record lacks (trainer.betas) reports one row per setting, and a cell that fails in training (its job's
checkpoint is corrupt, as after a node crash mid-write) has a W&B run with status failed. The same launches on the real local SLURM: test_slurm_plan.py."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from commands import ARGS, launch
from conftest import compose_cfg
from wandb_files import run_contents

from mfsweep.cli.status import main as status_main
from mfsweep.sweep.runner import checkpoint_path
from mfsweep.config.members import packed_keys
from mfsweep.report.aggregate import alpha_rows, collect, group_settings
from mfsweep.sweep.cells import context_name, member_cells, setting_keys
from mfsweep.sweep.plan import assign_tasks, merge_plan, read_plan

BETAS = "trainer.betas=[0.9,0.999],[0.5,0.999]"
FAILING = "[0.5,0.999]"  # the setting whose job finds a corrupt checkpoint
ERROR = "ValueError: checkpoint"  # how the job's error begins (the rest names the file)


def corrupt_checkpoint(root: Path, *overrides: str) -> None:
    """Write a truncated checkpoint where the per-run job of `overrides` looks for its own: the job fails
    when it resumes, which no check of the config can foresee."""
    merged: dict[str, str] = {}  # as Hydra's sweeper does: a repeated key keeps its place and takes the last value
    for a in ARGS + list(overrides):
        merged[a.split("=", 1)[0]] = a
    args = [a for a in merged.values() if not a.startswith("logger")]
    cfg = compose_cfg(*args)
    packed = packed_keys(cfg.sweep)
    context = context_name(args, packed)
    path = checkpoint_path(root, context, member_cells(root, context, cfg, setting_keys(args, packed)))
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a checkpoint")


@pytest.fixture(scope="module")
def betas(tmp_path_factory) -> tuple[Path, int, str]:
    """A sweep over trainer.betas whose second setting fails in training, logged to W&B offline."""
    root = tmp_path_factory.mktemp("plan") / "betas"
    corrupt_checkpoint(root, "dataset=swiss_roll", f"trainer.betas={FAILING}", "alpha.value=0.0", "seed=0")
    rc, out = launch(root, "dataset=swiss_roll", BETAS, "alpha.value=0.0", "seed=0", "logger=wandb")
    return root, rc, out


def test_plan_lists_every_cell_with_its_setting_and_folder(betas):
    root, rc, out = betas
    assert rc == 1 and ERROR in out, out[-3000:]
    plan = read_plan(root)
    assert plan["launcher"] == "basic" and plan["command"][1:3] == ["-m", *ARGS[:1]]
    assert sorted(c["setting"]["trainer.betas"] for c in plan["cells"]) == [FAILING, "[0.9,0.999]"]
    for c in plan["cells"]:
        assert (c["alpha"], c["seed"], c["alpha_spec"]) == (0.0, 0, {"name": "constant", "value": 0.0})
        assert (root / c["dir"] / "result.json").exists()
    # The launch ends with the sweep's status, and how to go on.
    assert "2 planned cells: 1 completed, 1 failed, 0 diverged, 0 missing" in out
    assert f"hydra.sweep.dir={root} sweep.rerun=failed" in out and f"report: mfsweep-report {root}" in out


def test_a_sweep_over_a_key_the_record_lacks_reports_one_row_per_setting(betas):
    root = betas[0]
    settings = group_settings(alpha_rows(collect(root)))
    status = {s.label: s.rows[0].status[0] for s in settings}
    assert status == {"swiss_roll trainer.betas=[0.9, 0.999]": "completed", "swiss_roll trainer.betas=[0.5, 0.999]": "failed"}


def test_a_cell_that_fails_in_training_has_a_failed_wandb_run(betas):
    root = betas[0]
    (failed,) = [c for c in read_plan(root)["cells"] if c["setting"]["trainer.betas"] == FAILING]
    (run_dir,) = (root / failed["dir"] / "wandb").glob("offline-run-*")
    run = run_contents(run_dir, wait_s=0)
    assert run["exit_code"] == 1 and ERROR in run["summary"]["error"]
    assert run["config"]["alpha"] == 0.0 and run["group"] == "-".join(root.parts[-2:])


def test_relaunch_that_leaves_a_failed_setting_exits_nonzero_naming_it(betas):
    root = betas[0]
    rc, out = launch(root, "dataset=swiss_roll", BETAS, "alpha.value=0.0", "seed=0", "logger=wandb")
    assert rc == 1 and "Launching" not in out, out[-3000:]  # nothing left to train: no job
    assert "1 failed or diverged cells were not trained again" in out
    assert "trainer.betas=[0.5,0.999] alpha=0 seed=0" in out and ERROR in out
    rc, out = launch(root, "dataset=swiss_roll", BETAS, "alpha.value=0.0", "seed=0", "sweep.rerun=none")
    assert rc == 0 and "Launching" not in out, out[-3000:]  # accepted as they are


def test_relaunch_of_a_finished_sweep_submits_nothing_and_status_says_so(tmp_path, capsys):
    root = tmp_path / "done"
    rc, out = launch(root, "dataset=two_moons", "alpha.value=0.0,1.0", "seed=0", "logger=csv")
    assert rc == 0 and out.count("completed sw1=") == 2, out[-3000:]
    rc, out = launch(root, "dataset=two_moons", "alpha.value=0.0,1.0", "seed=0", "logger=csv")
    assert rc == 0 and "Launching" not in out and "2 planned cells: 2 completed" in out, out[-3000:]
    assert status_main([str(root)]) == 0
    text = capsys.readouterr().out
    assert "2 planned cells: 2 completed, 0 failed, 0 diverged, 0 missing" in text and "to train" not in text
    assert len(json.loads((root / "plan.json").read_text())["launches"]) == 2


def test_a_relaunch_gives_array_tasks_to_its_own_cells_only(tmp_path):
    """Job numbers restart at 0 in every launch: the relaunch's job 0 is not the first launch's job 0."""
    def entry(folder: str, job: int) -> dict:
        return {"dir": folder, "job": job, "launched": True, "array_task": None}

    first = merge_plan(tmp_path, ["first"], "slurm", [entry("a", 0), entry("b", 1)])
    assert assign_tasks(first, {"100_0", "100_1"}, [[0, 1]])
    assert {c["dir"]: c["array_task"] for c in first["cells"]} == {"a": "100_0", "b": "100_1"}
    (tmp_path / "plan.json").write_text(json.dumps(first))

    second = merge_plan(tmp_path, ["second"], "slurm", [entry("c", 0)])
    assert assign_tasks(second, {"200"}, [[0]])  # a batch of one job is a plain job, not an array
    assert {c["dir"]: c["array_task"] for c in second["cells"]} == {"a": "100_0", "b": "100_1", "c": "200"}
    assert [c["launch"] for c in second["cells"]] == [0, 0, 1]


def test_status_table_keeps_a_schedule_name_apart_from_its_cells(tmp_path):
    """A schedule row is named by the schedule; a long name (adaptive_h) must not run into the first cell."""
    from mfsweep.sweep.status import setting_tables
    from mfsweep.sweep.states import PlannedCell

    entry = lambda seed: {"setting": {"alpha": "adaptive_h"}, "alpha": None, "seed": seed,  # noqa: E731
                          "alpha_spec": {"name": "adaptive_h"}}
    cells = [PlannedCell(entry(0), tmp_path, "completed"), PlannedCell(entry(1), tmp_path, "missing", "running")]
    header, columns, row = setting_tables(cells)
    assert row.split() == ["adaptive_h", "ok", "running"]
    assert row.index("ok") == columns.index("seed=0") and row.index("running") == columns.index("seed=1")


def test_a_packed_sweep_over_a_record_key_plans_each_cell_with_its_own_value(tmp_path):
    """`loss.adaptive_p=0.0,1.0` packed: the job's config holds the list; each planned cell records its own value
    (the plan is JSON: a list there failed to serialise and the launch died before submitting anything)."""
    from mfsweep.sweep.plan import plan_entries

    overrides = ["dataset=two_moons", "loss.adaptive_p=[0.0,1.0]", "alpha.value=[0.0]", "seed=[0]"]
    cfg = compose_cfg(*overrides)
    entries = plan_entries(cfg, tmp_path, overrides, 0)
    assert sorted(e["record_keys"]["adaptive_p"] for e in entries) == [0.0, 1.0]
    assert [e["setting"]["loss.adaptive_p"] for e in entries] == ["0.0", "1.0"]
    json.dumps(entries)
