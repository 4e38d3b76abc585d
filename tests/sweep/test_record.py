"""The per-cell record contract and atomic writes."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import TINY, compose_cfg

from mfsweep.atomic import write_json_atomic
from mfsweep.sweep.cells import member_cells
from mfsweep.sweep.plan import record_keys
from mfsweep.sweep.record import (SETTING_KEYS, alpha_schedule, cell_metrics, check_record, grid_alpha, make_record,
                                  read_record, round_alpha, setting_fields, tangent_spec, write_record)

BASE = dict(task="toy", dataset="swiss_roll", dim=2, alpha=0.30000000000000004, seed=1,
            alpha_schedule={"name": "constant", "value": 0.3}, alpha_trajectory={"start": 0.3, "end": 0.3, "mean": 0.3},
            tangent={"name": "ema", "ema_decay": 0.99}, anchor_weight=0.0, adaptive_p=1.0, steps=10, wall_s=1.23456)
COSINE = {"name": "cosine", "start": 0.0, "end": 1.0, "begin": 0, "end_step": 10}


def test_record_has_the_design_keys_and_rounds_alpha(tmp_path):
    rec = make_record(status="completed", metrics={"sw1": 0.1, "sw2": float("nan")}, **BASE)
    assert rec["alpha"] == 0.3 and rec["metrics"]["sw2"] is None and rec["metrics"]["fid"] is None
    write_record(tmp_path, rec)
    back = read_record(tmp_path)
    assert back == json.loads(json.dumps(rec))
    assert set(back) >= {"schema", "status", "error", "diverged_step", "metrics", "eval", "diagnostics", "history"}
    assert round_alpha(0.1 + 0.2) == 0.3


def test_invalid_records_are_rejected():
    with pytest.raises(ValueError, match="status"):
        make_record(status="done", **BASE)
    rec = make_record(status="completed", **BASE)
    rec["status"] = "diverged"
    with pytest.raises(ValueError, match="diverged_step"):
        check_record(rec)
    rec["status"] = "failed"
    with pytest.raises(ValueError, match="error message"):
        check_record(rec)
    del rec["metrics"]
    with pytest.raises(ValueError, match="missing keys"):
        check_record(rec)


def test_a_schedules_record_holds_its_trajectory_mean_as_alpha_and_no_grid_alpha(tmp_path):
    rec = make_record(status="completed", **BASE | {"alpha": None, "alpha_schedule": COSINE,
                                                    "alpha_trajectory": {"start": 0.0, "end": 1.0, "mean": 0.45}})
    write_record(tmp_path, rec)
    back = read_record(tmp_path)
    assert (back["schema"], back["alpha"], back["alpha_schedule"]) == (2, 0.45, COSINE)
    assert grid_alpha(back) is None and grid_alpha(make_record(status="completed", **BASE)) == 0.3


def test_a_schema_1_record_still_reads_as_a_constant_alpha_and_a_named_proxy(tmp_path):
    rec = make_record(status="completed", **BASE)
    old = {k: v for k, v in rec.items() if k not in ("alpha_schedule", "alpha_trajectory")} | {"schema": 1,
                                                                                               "tangent": "ema"}
    write_json_atomic(tmp_path / "result.json", old)
    back = read_record(tmp_path)
    assert alpha_schedule(back) == {"name": "constant", "value": 0.3} and grid_alpha(back) == 0.3
    assert tangent_spec(back) == {"name": "ema"}
    with pytest.raises(ValueError, match="missing keys"):
        check_record({k: v for k, v in rec.items() if k != "alpha_schedule"})  # schema 2 needs its specs


def test_atomic_write_leaves_old_file_when_serialisation_fails(tmp_path):
    path = tmp_path / "result.json"
    write_json_atomic(path, {"a": 1})
    with pytest.raises(ValueError):
        write_json_atomic(path, {"a": float("nan")})  # JSON cannot hold NaN: nothing is replaced
    assert json.loads(path.read_text()) == {"a": 1}
    assert os.listdir(tmp_path) == ["result.json"]  # no temporary file left behind


def test_cell_metrics_are_the_evaluation_and_tail_means_of_the_history():
    history = [{"step": s, "train/loss_mse": float(s), "train/loss_weighted": 2.0 * s} for s in range(1, 21)]
    history += [{"step": s, "diag/grad_var": float(s), "diag/grad_var_total": 10.0} for s in (5, 10, 15, 20)]
    metrics = cell_metrics(history, {"sw1": 0.25})
    assert metrics["sw1"] == 0.25
    assert metrics["loss_mse"] == (19 + 20) / 2             # the last 10% of 20 rows: 2 rows
    assert metrics["loss_weighted"] == 2 * (19 + 20) / 2
    assert metrics["grad_var"] == (15 + 20) / 2             # the second half of 4 measurements
    assert metrics["grad_var_total"] == 10.0
    assert cell_metrics([{"step": 1, "train/loss_mse": 3.0}], None) == {
        "loss_mse": 3.0, "loss_weighted": None, "grad_var": None, "grad_var_total": None}  # at least one row


def test_setting_fields_are_the_setting_keys_read_from_the_cells_config():
    config = {"dataset": {"name": "swiss_roll"}, "loss": {"anchor_weight": 0.5, "adaptive_p": 1.0}}
    fields = setting_fields(lambda key: config[key.split(".")[0]][key.split(".")[1]], task="toy", dim=2,
                            alpha_schedule=COSINE, tangent={"name": "ema", "ema_decay": 0.99})
    assert tuple(fields) == SETTING_KEYS
    assert fields == {"task": "toy", "dataset": "swiss_roll", "dim": 2, "alpha_schedule": COSINE,
                      "tangent": {"name": "ema", "ema_decay": 0.99}, "anchor_weight": 0.5, "adaptive_p": 1.0}


def test_a_planned_cells_entry_holds_the_same_setting_keys_as_its_record_will():
    """plan.json's `record_keys` (read for a setting none of whose cells has a record yet) come from the same
    `setting_fields` as the record, so the report groups a missing cell with its recorded ones."""
    cfg = compose_cfg(*TINY)
    cells = member_cells(Path("root"), "", cfg)
    keys = record_keys(cfg, cells[0])
    assert tuple(keys) == SETTING_KEYS
    assert keys["dataset"] == cfg.dataset.name and keys["dim"] == cfg.dataset.dim
