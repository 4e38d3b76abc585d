"""Cell locks and record provenance: two launches at once on one sweep train each cell once, a stale lock is
taken over, and a report flags a setting whose records come from different code or config."""
from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

from commands import ARGS, CLI

from mfsweep.report.page import build_report, provenance_warnings, report_text, write_report
from mfsweep.report.aggregate import collect, group_settings, alpha_rows
from mfsweep.sweep.lock import LOCK, acquire, read_lock, release
from mfsweep.sweep.record import make_record, read_record, write_record
from mfsweep.sweep.states import missing_reason


def _lock_of(cell: Path, **owner) -> None:
    cell.mkdir(parents=True, exist_ok=True)
    (cell / LOCK).write_text(json.dumps({"host": socket.gethostname(), "slurm_job": None, "expires": None} | owner))


def test_a_live_owner_keeps_its_lock_and_a_dead_one_loses_it(tmp_path):
    owner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        _lock_of(tmp_path, pid=owner.pid)
        assert not acquire(tmp_path)
    finally:
        owner.kill()
        owner.wait()
    assert acquire(tmp_path)  # its owner is dead: taken over
    assert read_lock(tmp_path)["pid"] != owner.pid
    write_record(tmp_path, make_record(status="completed", task="toy", dataset="swiss_roll", dim=2, alpha=0.0, seed=0,
                                       tangent={"name": "ema", "ema_decay": 0.99}, anchor_weight=0.0, adaptive_p=1.0, steps=1, wall_s=0.1))
    assert read_lock(tmp_path) is None  # the record released it


def test_a_lock_past_its_time_limit_is_taken_over_from_another_host(tmp_path):
    _lock_of(tmp_path, host="elsewhere", pid=1, expires=time.time() + 3600)
    assert not acquire(tmp_path)
    _lock_of(tmp_path, host="elsewhere", pid=1, expires=time.time() - 1)
    assert acquire(tmp_path, time_limit_s=60)
    lock = read_lock(tmp_path)
    assert lock["host"] == socket.gethostname() and lock["expires"] > time.time()
    release(tmp_path)
    assert read_lock(tmp_path) is None


def test_two_launches_at_once_train_each_cell_once(tmp_path):
    root = tmp_path / "sweep"
    root.mkdir()
    command = [CLI, "-m", *ARGS, "dataset=two_moons", "alpha.value=0.0,0.5,1.0", "seed=0", "logger=csv",
               f"hydra.sweep.dir={root}"]
    procs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path)
             for _ in range(2)]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    trained = re.findall(r"cell (alpha=\S+): completed", "".join(outs))
    assert sorted(trained) == ["alpha=0,seed=0", "alpha=0.5,seed=0", "alpha=1,seed=0"], outs
    # The other launch skipped each cell (locked, or recorded meanwhile) or found it recorded before submitting.
    assert all(read_lock(p.parent) is None for p in root.rglob("result.json"))


def test_a_task_cancelled_while_it_trains_reads_cancelled_whatever_lock_it_left(tmp_path):
    """scancel of a training task leaves its cells' locks: SLURM's final state says why they have no record, over
    the lock; a running task's cell names its lock's owner. (The SLURM tests cancel their tasks before they train,
    at a gate, so that the cancel cannot come too late: this is the lock's side of it.)"""
    _lock_of(tmp_path, pid=os.getpid(), slurm_job="41_1")  # a live owner: the lock is not stale
    assert missing_reason(tmp_path, "CANCELLED") == "cancelled"
    assert missing_reason(tmp_path, "TIMEOUT") == "timed out"
    running = f"running ({socket.gethostname()} pid {os.getpid()}, SLURM job 41_1)"
    assert missing_reason(tmp_path, "RUNNING") == missing_reason(tmp_path, None) == running


def test_a_setting_with_records_from_different_code_is_flagged(tmp_path):
    for seed, commit in ((0, "1111111aaaa"), (1, "2222222bbbb")):
        cell = tmp_path / "dataset=swiss_roll" / f"alpha=0,seed={seed}"
        rec = make_record(status="completed", task="toy", dataset="swiss_roll", dim=2, alpha=0.0, seed=seed,
                          tangent={"name": "ema", "ema_decay": 0.99}, anchor_weight=0.0, adaptive_p=1.0, steps=1, wall_s=0.1, metrics={"sw1": 0.1},
                          config={"alpha": {"value": 0.0}, "seed": seed, "trainer": {"lr": 1e-3}})
        rec["provenance"]["git_commit"] = commit
        write_record(cell, rec)
    (setting,) = group_settings(alpha_rows(collect(tmp_path)))
    (warning,) = provenance_warnings([setting])
    assert "swiss_roll" in warning and "git_commit: 2 values (1111111aaa, 2222222bbb)" in warning
    assert "config_hash" not in warning  # alpha and seed are not part of the hash
    # The report says so in its verdict section, on the page, in report.md and on the terminal.
    rep = build_report(tmp_path)
    paths = write_report(rep)
    for text in (paths["html"].read_text(), paths["markdown"].read_text(), report_text(rep)):
        assert "git_commit: 2 values" in " ".join(text.replace("\\_", "_").split())  # markdown escapes _
    rec = read_record(cell)["provenance"]
    assert set(rec) == {"mfsweep", "git_commit", "git_dirty", "torch", "device", "hostname", "config_hash"}
    assert rec["device"] == "cpu" and rec["hostname"] == socket.gethostname()
