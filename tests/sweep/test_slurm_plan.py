"""A planned sweep on the real local SLURM: `scancel` of one running array task leaves its cells listed as
cancelled by mfsweep-status and the report; the relaunch submits only that task's job and resumes them; a relaunch
of the finished sweep submits no array task. Jobs carry the sweep's name."""
from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from commands import ARGS, CLI, PRESET

from mfsweep.cli.status import main as status_main
from mfsweep.report.aggregate import collect, group_settings, alpha_rows
from mfsweep.sweep.plan import read_plan, submitted_tasks
from slurm_cluster import JobGate, SlurmCluster

pytestmark = pytest.mark.slurm

GRID = ["sweep.mode=packed", "dataset=swiss_roll,two_moons", "alpha.value=0.0,1.0", "seed=0", "logger=csv",
        "sweep.name=plan-test"]


def _command(root: Path, gate: JobGate) -> list[str]:
    """The sweep's command, the same for every launch; its jobs wait at `gate` (every job once it is open)."""
    return [CLI, "-m", *PRESET, *ARGS, *GRID, gate.override, f"hydra.sweep.dir={root}"]


def _task(root: Path, dataset: str, timeout: float = 300) -> str:
    """The array task that owns `dataset`'s cells, once plan.json records it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        plan = read_plan(root) or {"cells": []}
        tasks = {c["array_task"] for c in plan["cells"] if c["setting"]["dataset"] == dataset}
        if len(tasks) == 1 and None not in tasks:
            return tasks.pop()
        time.sleep(0.1)
    raise TimeoutError(f"no array task of {root} owns {dataset}'s cells after {timeout} s")


def test_cancelled_task_is_listed_then_resumed_and_a_finished_sweep_submits_nothing(slurm_cluster: SlurmCluster,
                                                                                    tmp_path, capsys):
    # Both tasks wait, RUNNING, at the gate until the test lets them go: swiss_roll's is released, two_moons' is
    # cancelled there, so it cannot have finished first, however fast the machine. (A pending array element
    # cancelled before it starts leaves no trace in sacct, and submitit then waits for it forever: the task
    # cancelled runs, as a researcher's would.)
    gate = JobGate.create(tmp_path / "gate")
    root = tmp_path / "grid"
    root.mkdir()
    proc = subprocess.Popen(_command(root, gate), cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        gate.release(_task(root, "swiss_roll"))
        moons = _task(root, "two_moons")
        gate.wait_held(moons)
        assert slurm_cluster.run("scancel", moons).returncode == 0
        out = proc.communicate(timeout=300)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
        gate.open()  # no job stays held, keeping the node from later tests (the relaunches' jobs go straight on)
    assert proc.returncode == 1, out[-3000:]
    assert "relaunch the same command to resume them" in out and "Traceback" not in out, out[-3000:]
    assert "4 planned cells: 2 completed, 0 failed, 0 diverged, 2 missing (2 cancelled)" in out
    assert slurm_cluster.states(moons) == {moons: "CANCELLED"}
    array = moons.split("_")[0]
    names = slurm_cluster.run("sacct", "-n", "-X", "-P", "-j", array, "-o", "JobName").stdout.split()
    assert set(names) == {"plan-test"}

    assert status_main([str(root)]) == 0
    text = capsys.readouterr().out
    assert f"dataset=two_moons: 0/2 completed  (SLURM {moons})" in text and "cancelled" in text
    assert f"hydra.sweep.dir={root}" in text.split("to train the 2 cells left")[1]
    (moon,) = [s for s in group_settings(alpha_rows(collect(root))) if s.keys["dataset"] == "two_moons"]
    assert all(r.status[0] == "missing" and r.cells[0].record["reason"] == "cancelled" for r in moon.rows)

    before = submitted_tasks(root)
    done = subprocess.run(_command(root, gate), cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (again,) = submitted_tasks(root) - before  # one job: the cancelled task's (submitit submits one job alone)
    assert "4 planned cells: 4 completed" in done.stdout
    assert {c["array_task"] for c in read_plan(root)["cells"] if c["setting"]["dataset"] == "two_moons"} == {again}

    before = submitted_tasks(root)
    done = subprocess.run(_command(root, gate), cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and submitted_tasks(root) == before, done.stdout[-3000:] + done.stderr[-3000:]
    assert "4 planned cells: 4 completed" in done.stdout
