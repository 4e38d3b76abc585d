"""A race (sweep.until=resolved) on the real local SLURM, interrupted: round 2's job is cancelled while it runs;
the launch ends saying how to resume, with round 1 decided in plan.json; the relaunch of the same command
submits round 2's job alone, keeps round 1's decisions as they were, and finishes the race."""
from __future__ import annotations

import subprocess

import pytest
from commands import ARGS, CLI, PRESET, RACE

from mfsweep.cli.status import summary
from mfsweep.sweep.plan import read_plan, submitted_tasks
from slurm_cluster import JobGate, SlurmCluster

pytestmark = pytest.mark.slurm

COMMAND = [CLI, "-m", *PRESET, *ARGS, *RACE, "sweep.name=race-test"]


def test_a_cancelled_race_resumes_where_it_stopped_without_deciding_again(slurm_cluster: SlurmCluster, tmp_path):
    # Every job of the launch waits, RUNNING, at the gate until the test lets it go: round 1's is released,
    # round 2's is cancelled there, so it cannot have finished first, however fast the machine.
    gate = JobGate.create(tmp_path / "gate")
    root = tmp_path / "race"
    root.mkdir()
    proc = subprocess.Popen([*COMMAND, gate.override, f"hydra.sweep.dir={root}"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        gate.release(first := gate.wait_held())
        task = gate.wait_held(besides={first})  # submitted once round 1 is decided
        assert [r["round"] for r in read_plan(root)["race"]["rounds"]] == [1]
        assert slurm_cluster.run("scancel", task).returncode == 0
        out = proc.communicate(timeout=300)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
        gate.open()  # no job stays held, keeping the node from later tests (the relaunch's job goes straight on)
    assert proc.returncode == 1 and "relaunch the same command to resume them" in out, out[-3000:]
    assert "6 planned cells: 3 completed, 0 failed, 0 diverged, 3 missing (3 cancelled)" in out
    assert slurm_cluster.states(task) == {task: "CANCELLED"}
    plan = read_plan(root)
    assert [{c["array_task"] for c in plan["cells"] if c["seed"] == seed} for seed in (0, 1)] == [{first}, {task}]
    decided = plan["race"]["rounds"]
    assert [r["round"] for r in decided] == [1]
    assert "race (sweep.until=resolved): 1 round decided of at most 2" in summary(root)

    before = submitted_tasks(root)
    done = subprocess.run([*COMMAND, gate.override, f"hydra.sweep.dir={root}"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (again,) = submitted_tasks(root) - before  # round 2's job only: round 1's cells are recorded and decided
    race = read_plan(root)["race"]
    assert race["rounds"][:1] == decided and [r["seeds"] for r in race["rounds"]] == [[0], [1]]
    assert {c["array_task"] for c in read_plan(root)["cells"] if c["seed"] == 1} == {again}
    assert "6 planned cells: 6 completed" in done.stdout and "2 rounds decided of at most 2" in done.stdout
