"""A race (sweep.until=resolved) on the real local SLURM, interrupted: round 2's array task is cancelled while it
trains; the launch ends saying how to resume, with round 1 decided in plan.json; the relaunch of the same
command submits round 2's job alone, keeps round 1's decisions as they were, and finishes the race."""
from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from commands import ALPHAS, ARGS, CLI, PRESET, RACE

from mfsweep.cli.status import summary
from mfsweep.sweep.lock import read_lock
from mfsweep.sweep.plan import read_plan, submitted_tasks
from slurm_cluster import SlurmCluster

# slow: racy on a quiet machine (round 2's job can finish before scancel lands; a fresh-clone run saw it
# exit 0 once), so it stays out of `make test` until the cancel waits on a job that cannot finish first.
pytestmark = [pytest.mark.slurm, pytest.mark.slow]

# Long enough that the cancel lands while round 2 trains, as in test_slurm_plan.py.
COMMAND = [CLI, "-m", *PRESET, *ARGS, *RACE, "sweep.name=race-test", "trainer.max_steps=3000"]


def _round_two_task(root: Path, timeout: float = 300) -> str:
    """Round 2's array task, once round 1 is decided and the task trains round 2's cells (their locks exist)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        plan = read_plan(root) or {}
        cells = [c for c in plan.get("cells", []) if c["seed"] == 1]
        tasks = {c.get("array_task") for c in cells}
        if len((plan.get("race") or {}).get("rounds", [])) == 1 and len(cells) == len(ALPHAS) and len(tasks) == 1 \
                and None not in tasks and all(read_lock(root / c["dir"]) for c in cells):
            return tasks.pop()
        time.sleep(0.1)
    raise TimeoutError(f"round 2 of the race in {root} not training after {timeout} s")


def test_a_cancelled_race_resumes_where_it_stopped_without_deciding_again(slurm_cluster: SlurmCluster, tmp_path):
    root = tmp_path / "race"
    root.mkdir()
    proc = subprocess.Popen([*COMMAND, f"hydra.sweep.dir={root}"], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    task = _round_two_task(root)
    assert slurm_cluster.run("scancel", task).returncode == 0
    out = proc.communicate(timeout=300)[0]
    assert proc.returncode == 1 and "relaunch the same command to resume them" in out, out[-3000:]
    assert "6 planned cells: 3 completed, 0 failed, 0 diverged, 3 missing (3 cancelled)" in out
    first = read_plan(root)["race"]["rounds"]
    assert [r["round"] for r in first] == [1]
    assert "race (sweep.until=resolved): 1 round decided of at most 2" in summary(root)

    before = submitted_tasks(root)
    done = subprocess.run([*COMMAND, f"hydra.sweep.dir={root}"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (again,) = submitted_tasks(root) - before  # round 2's job only: round 1's cells are recorded and decided
    race = read_plan(root)["race"]
    assert race["rounds"][:1] == first and [r["seeds"] for r in race["rounds"]] == [[0], [1]]
    assert {c["array_task"] for c in read_plan(root)["cells"] if c["seed"] == 1} == {again}
    assert "6 planned cells: 6 completed" in done.stdout and "2 rounds decided of at most 2" in done.stdout
