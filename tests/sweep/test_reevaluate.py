"""mfsweep-evaluate: re-evaluation from the jobs' checkpoints, without training; the report refuses to pair
cells evaluated differently."""
from __future__ import annotations

import json
import shutil

from conftest import TINY, compose_cfg
from mfsweep.cli.evaluate import main as evaluate
from mfsweep.cli.report import main as report
from mfsweep.cli.train import train


def _cells(root):
    return sorted(p.parent for p in root.rglob("result.json"))


def test_training_settings_reproduce_the_records_and_a_draw_changes_only_the_evaluation(tiny_sweep, tmp_path, capsys):
    root = shutil.copytree(tiny_sweep, tmp_path / "sweep")
    assert evaluate([str(root)]) == 0
    assert evaluate([str(root), "eval.draw=1"]) == 0
    assert evaluate([str(root), "eval.estimator=quantile", "eval.n_splits=1"]) == 0  # one split: a null SE
    for cell in _cells(root):
        one = json.loads((cell / "evaluations" / "eval.estimator=quantile,eval.n_splits=1.json").read_text())
        assert one["metrics"]["sw1"] > 0 and one["metrics"]["sw1_se"] is None
        record = json.loads((cell / "result.json").read_text())
        same = json.loads((cell / "evaluations" / "training.json").read_text())
        assert same["metrics"] == record["metrics"] and same["eval"] == record["eval"]
        other = json.loads((cell / "evaluations" / "eval.draw=1.json").read_text())
        assert other["metrics"]["sw1"] != record["metrics"]["sw1"]
        assert {k: v for k, v in other["metrics"].items() if not k.startswith(("sw", "fid"))} == \
            {k: v for k, v in record["metrics"].items() if not k.startswith(("sw", "fid"))}
    capsys.readouterr()
    # the two evaluations are not mixed in one report: one line saying how to re-evaluate
    victim = _cells(root)[0]
    (victim / "evaluations" / "training.json").write_text((victim / "evaluations" / "eval.draw=1.json").read_text())
    assert report([str(root), "--evaluation", "training"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "evaluated differently" in err and "draw=1 vs 0" in err.replace("draw=0 vs 1", "draw=1 vs 0")
    assert "mfsweep-evaluate" in err


def test_a_missing_checkpoint_is_one_line_naming_the_cell(tiny_sweep, tmp_path, capsys):
    root = shutil.copytree(tiny_sweep, tmp_path / "sweep")
    for ckpt in root.rglob("last.ckpt"):
        ckpt.unlink()
    assert evaluate([str(root)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "no checkpoint" in err and "seed=" in err
    assert not list(root.rglob("evaluations"))


def test_cells_a_relaunch_found_recorded_keep_their_jobs_checkpoints(tiny_sweep, tmp_path):
    # a relaunch plans the cells it finds recorded with no job; two such folders are not one job
    from mfsweep.sweep.reevaluate import jobs

    root = tmp_path / "sweep"
    for name in ("dataset=swiss_roll", "dataset=copy"):
        shutil.copytree(tiny_sweep / "dataset=swiss_roll", root / name)
    cells = [{"dir": str(c.relative_to(root)), "job": None, "launch": 1} for c in _cells(root)]
    (root / "plan.json").write_text(json.dumps({"cells": cells}))
    found = jobs(root)
    assert sorted(ckpt.parent.parent.parent.name for ckpt, _ in found) == ["dataset=copy", "dataset=swiss_roll"]
    assert all(len(members) == 6 and {c.parent for c in members} == {ckpt.parent.parent.parent}
               for ckpt, members in found)


def test_a_cell_a_relaunch_trained_again_is_evaluated_once_from_its_latest_job(tiny_sweep, tmp_path, capsys):
    """A relaunch that retrains one cell (here: its record said failed) gives it a second job; the first job's
    checkpoint still holds its earlier weights, so it must be evaluated from the relaunch's checkpoint only."""
    root = shutil.copytree(tiny_sweep, tmp_path / "sweep")
    setting = root / "dataset=swiss_roll"
    again = setting / "alpha=0.5,seed=1"
    record = json.loads((again / "result.json").read_text())
    (again / "result.json").write_text(json.dumps(record | {"status": "failed", "error": "RuntimeError: out of memory"}))
    train(compose_cfg(*TINY, "tangent=ema", "alpha.value=[0.5]", "seed=[1]", "sweep.rerun=failed"), root,
          "dataset=swiss_roll")
    cells = [{"dir": str(c.relative_to(root)), "job": 0 if c == again else None, "launch": 2 if c == again else 1}
             for c in _cells(root)]
    (root / "plan.json").write_text(json.dumps({"cells": cells}))
    assert evaluate([str(root), "--name", "again"]) == 0
    assert "evaluated 6 cells of 2 jobs" in capsys.readouterr().out
    used = {c.name: json.loads((c / "evaluations" / "again.json").read_text())["checkpoint"] for c in _cells(root)}
    alone = {ckpt for name, ckpt in used.items() if name != again.name}
    assert len(alone) == 1 and used[again.name] not in alone  # the relaunch's own checkpoint, not the first job's
