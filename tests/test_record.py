"""The per-cell record contract and atomic writes."""
from __future__ import annotations

import json
import os

import pytest

from mfsweep.sweep.atomic import write_json_atomic
from mfsweep.sweep.record import check_record, make_record, read_record, round_alpha, write_record

BASE = dict(task="toy", dataset="swiss_roll", dim=2, alpha=0.30000000000000004, seed=1, tangent="ema",
            anchor_weight=0.0, adaptive_p=1.0, steps=10, wall_s=1.23456)


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


def test_atomic_write_leaves_old_file_when_serialisation_fails(tmp_path):
    path = tmp_path / "result.json"
    write_json_atomic(path, {"a": 1})
    with pytest.raises(ValueError):
        write_json_atomic(path, {"a": float("nan")})  # JSON cannot hold NaN: nothing is replaced
    assert json.loads(path.read_text()) == {"a": 1}
    assert os.listdir(tmp_path) == ["result.json"]  # no temporary file left behind
