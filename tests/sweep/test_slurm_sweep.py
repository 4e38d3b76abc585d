"""Sweeps on a real local SLURM through the `launcher=slurm` preset (hydra-submitit-launcher's submitit_slurm).

One packed grid (two datasets x alphas 0, 1) runs as a job array, one task per dataset. Its swiss_roll task is
interrupted twice while it trains, first by submitit's preemption signal (USR2), then by `scontrol requeue`
(SIGTERM); it resumes each time and ends exactly where an uninterrupted run of the same job ends (trained
here in the test process), its W&B run continued under the same id in one offline folder. Meanwhile, as soon as the two_moons task
is done, a per-run re-launch into the grid's folder submits no task for the two_moons cell already recorded and
records as failed a new one whose job checkpoint is corrupt. Each launch is a blocking `mfsweep-train -m` in a subprocess.
"""
from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
from commands import CLI, PRESET
from conftest import TINY, compose_cfg
from wandb_files import run_contents

from mfsweep.cli.train import train
from mfsweep.sweep.runner import checkpoint_path
from mfsweep.sweep.cells import context_name, plan_cells
from mfsweep.tasks.tracking import wandb_run_id
from slurm_cluster import SlurmCluster

pytestmark = pytest.mark.slurm

STEPS = 200
# Everything that decides what a cell computes; the grid, the reference and the re-launch share it.
CELL_ARGS = [a for a in TINY if not a.startswith(("trainer.max_steps", "logger", "grad_var.every"))] + [
    f"trainer.max_steps={STEPS}", "trainer.checkpoint_every=25", "grad_var.every=50", "tangent=ema",
]
# The cells' folders below the sweep folder, whichever launch or mode trains them.
ROLL, MOONS = (context_name(CELL_ARGS + [f"dataset={d}"]) for d in ("swiss_roll", "two_moons"))
# submitit's job folders: <array id>_<task>, or <job id> for a batch of one job (submitted as a plain job)
TASK_DIR = re.compile(r"(\d+)(?:_(\d+))?")
TIMEOUT = 300


def _arrays(root: Path) -> set[str]:
    folder = root / ".submitit"
    return {m[1] for p in folder.iterdir() if (m := TASK_DIR.fullmatch(p.name))} if folder.exists() else set()


@dataclass
class Launch:
    """A blocking `mfsweep-train -m` launch running in the background; its output goes to a file."""

    root: Path
    proc: subprocess.Popen
    log: Path
    earlier: set[str]  # arrays of earlier launches into the same folder

    @classmethod
    def start(cls, root: Path, log: Path, *args: str) -> "Launch":
        earlier = _arrays(root)
        with log.open("w") as out:
            proc = subprocess.Popen([CLI, "-m", *PRESET, *CELL_ARGS, *args, f"hydra.sweep.dir={root}"],
                                    cwd=log.parent, stdout=out, stderr=subprocess.STDOUT, text=True)
        return cls(root, proc, log, earlier)

    def wait(self) -> tuple[int, str]:
        try:
            rc = self.proc.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            pytest.fail(f"launch into {self.root} still running after {TIMEOUT} s:\n{self.log.read_text()[-3000:]}")
        return rc, self.log.read_text()

    def array_id(self) -> str:
        """This launch's SLURM array id, from submitit's task folders, once its first task has started: the
        first array after the `earlier` ones (a later launch into the same folder submits later)."""
        _wait_for(f"a task folder in {self.root}/.submitit", lambda: _arrays(self.root) - self.earlier
                  or self.proc.poll() is not None, timeout=TIMEOUT)
        found = _arrays(self.root) - self.earlier
        assert found, f"launch into {self.root} started no array:\n{self.log.read_text()[-3000:]}"
        return min(found, key=int)

    def task_log(self, task: str) -> str:
        return "".join(p.read_text() for p in sorted((self.root / ".submitit" / task).glob("*_log.*")))


def _wait_for(what: str, condition, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout} s for {what}")
        time.sleep(0.05)


class InThread:
    """Runs `fn` in a daemon thread; `join` waits for it and returns its result or raises its error."""

    def __init__(self, fn, *args) -> None:
        self.result, self.error = None, None
        self.thread = threading.Thread(target=self._run, args=(fn, *args), daemon=True)
        self.thread.start()

    def _run(self, fn, *args) -> None:
        try:
            self.result = fn(*args)
        except BaseException as exc:  # re-raised by join, in the test
            self.error = exc

    def join(self):
        self.thread.join(timeout=TIMEOUT)
        if self.thread.is_alive():
            raise TimeoutError(f"still running after {TIMEOUT} s")
        if self.error:
            raise self.error
        return self.result


def _slurm(cluster: SlurmCluster, *command: str) -> None:
    done = cluster.run(*command)
    assert done.returncode == 0, f"{' '.join(command)}: {done.stderr}"


def _release_when_requeued(cluster: SlurmCluster, job: str) -> None:
    """SLURM holds a requeued job for 2 minutes (its BeginTime); the test cluster starts it at once."""
    _wait_for(f"{job} pending after its requeue",
              lambda: cluster.run("squeue", "-h", "-j", job, "-o", "%T").stdout.strip() == "PENDING")
    _slurm(cluster, "scontrol", "update", f"jobid={job}", "starttime=now")


@contextmanager
def frozen(cluster: SlurmCluster, job: str) -> Iterator[None]:
    """The job's processes stopped (SIGSTOP) inside the block and continued after it: a signal sent meanwhile
    lands at the step where the job was frozen, however fast the machine trains the rest."""
    raw = cluster.run("squeue", "-h", "-j", job, "-o", "%A").stdout.strip()
    listed = cluster.run("scontrol", "listpids", raw).stdout.splitlines()[1:]
    pids = [int(line.split()[0]) for line in listed if line.split() and line.split()[0].isdigit()]
    assert pids, f"no processes of job {job} ({raw}) to freeze"
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass


def interrupt_twice(cluster: SlurmCluster, launch: Launch, task: int, ckpt: Path) -> list[str]:
    """Interrupts array task `task` twice while it trains: submitit's preemption signal (USR2) once its first
    checkpoint exists, then `scontrol requeue` (SIGTERM) once the resumed run has checkpointed again; the job
    is frozen at each checkpoint while the interruption is sent, so it cannot train to its end first."""
    job = f"{launch.array_id()}_{task}"
    _wait_for(f"first checkpoint {ckpt}", ckpt.exists, timeout=TIMEOUT)
    with frozen(cluster, job):
        _slurm(cluster, "scancel", "--signal=USR2", job)
    _release_when_requeued(cluster, job)
    before = ckpt.stat().st_mtime_ns
    _wait_for("a checkpoint of the resumed run", lambda: ckpt.stat().st_mtime_ns > before, timeout=TIMEOUT)
    with frozen(cluster, job):
        _slurm(cluster, "scontrol", "requeue", job)
    _release_when_requeued(cluster, job)
    return ["USR2", "requeue"]


@dataclass
class Relaunch:
    launch: Launch
    before: dict[str, dict]  # the grid's records when it started
    failing: Path  # the cell whose job checkpoint is corrupt
    corrupt: Path


def relaunch_when_recorded(root: Path) -> Relaunch:
    """Once the grid's two_moons cells are recorded: a per-run re-launch into the grid's folder of two_moons
    alphas 0.5 and 1, with alpha 0.5's job checkpoint made corrupt beforehand."""
    done = plan_cells(root, MOONS, [0.0, 1.0], [0])
    _wait_for("the grid's two_moons records", lambda: all((c.dir / "result.json").exists() for c in done), TIMEOUT)
    (cell,) = plan_cells(root, MOONS, [0.5], [0])
    corrupt = checkpoint_path(root, MOONS, [cell])
    corrupt.parent.mkdir(parents=True)
    corrupt.write_bytes(b"half a checkpoint")
    before = _records(root)
    launch = Launch.start(root, root.parent / "again.log", "dataset=two_moons", "alpha.value=0.5,1.0", "seed=0",
                          "logger=csv")
    return Relaunch(launch, before, cell.dir, corrupt)


@dataclass
class Grid:
    launch: Launch
    interrupter: InThread
    relaunch: InThread
    reference: Path  # the swiss_roll job trained without interruption, in the test process


@pytest.fixture(scope="module")
def grid(slurm_cluster: SlurmCluster, tmp_path_factory) -> Grid:
    """The packed grid on SLURM, its swiss_roll task (task 0) interrupted twice; the re-launch starts as soon
    as the two_moons task is done; meanwhile the test process trains the swiss_roll job uninterrupted."""
    base = tmp_path_factory.mktemp("slurm_sweep")
    launch = Launch.start(base / "grid", base / "grid.log", "sweep.mode=packed", "dataset=swiss_roll,two_moons",
                          "alpha.value=0.0,1.0", "seed=0", "logger=wandb", "logger.tags=[slurm,requeue]",
                          "sweep.name=slurm-grid")
    ckpt = checkpoint_path(launch.root, ROLL, plan_cells(launch.root, ROLL, [0.0, 1.0], [0]))
    interrupter = InThread(interrupt_twice, slurm_cluster, launch, 0, ckpt)
    relaunch = InThread(relaunch_when_recorded, launch.root)
    reference = base / "reference"
    train(compose_cfg(*CELL_ARGS, "dataset=swiss_roll", "alpha.value=[0.0,1.0]", "seed=0", "logger=csv"), reference,
          ROLL, [*CELL_ARGS, "dataset=swiss_roll"])  # the job's own overrides: its cells' setting
    yield Grid(launch, interrupter, relaunch, reference)
    for proc in [launch.proc] + ([relaunch.result.launch.proc] if relaunch.result else []):
        if proc.poll() is None:
            proc.kill()


def _records(root: Path) -> dict[str, dict]:
    return {str(p.parent.relative_to(root)): json.loads(p.read_text()) for p in root.rglob("result.json")}


def test_packed_grid_runs_as_an_array_one_task_per_dataset(grid: Grid, slurm_cluster: SlurmCluster):
    rc, out = grid.launch.wait()
    grid.interrupter.join()
    assert rc == 0, out[-3000:]
    array = grid.launch.array_id()
    assert slurm_cluster.wait(array) == {f"{array}_0": "COMPLETED", f"{array}_1": "COMPLETED"}
    records = {k: v for k, v in _records(grid.launch.root).items() if v["alpha"] in (0.0, 1.0)}
    assert len(records) == 4
    for name, rec in records.items():
        assert (rec["status"], rec["steps"]) == ("completed", STEPS), name
        assert rec["execution"] == {"members_in_job": 2, "mode": "packed"}
    assert {rec["dataset"] for rec in records.values()} == {"swiss_roll", "two_moons"}
    for task in (0, 1):  # each task trained both alphas of one dataset
        assert grid.launch.task_log(f"{array}_{task}").count("completed sw1=") == 2


def test_interrupted_task_resumes_to_the_uninterrupted_result(grid: Grid, slurm_cluster: SlurmCluster):
    assert grid.launch.wait()[0] == 0
    assert grid.interrupter.join() == ["USR2", "requeue"]
    job = f"{grid.launch.array_id()}_0"
    runs = slurm_cluster.run("sacct", "-n", "-X", "-P", "-D", "-j", job, "-o", "State").stdout.split()
    assert runs == ["REQUEUED", "REQUEUED", "COMPLETED"]
    log = grid.launch.task_log(job)
    usr2 = re.search(r"preemption signal SIGUSR2: checkpoint at step (\d+)", log)
    term = re.search(r"stopped by SIGTERM at step (\d+)", log)
    assert usr2 and term and 0 < int(usr2[1]) < int(term[1]) < STEPS, log[-3000:]  # both mid-run
    assert log.count("resuming from") == 2
    # Hydra's per-job subdir is named by the job number, which a requeued job keeps (no new one appears).
    assert sorted(p.name for p in (grid.launch.root / "jobs").iterdir()) == ["0", "1"]

    reference, resumed = _records(grid.reference / ROLL), _records(grid.launch.root / ROLL)
    assert sorted(resumed) == sorted(reference) == ["alpha=0,seed=0", "alpha=1,seed=0"]
    for name in resumed:
        rec, ref = dict(resumed[name]), dict(reference[name])
        rec.pop("wall_s"), ref.pop("wall_s")
        assert rec == ref, name
        cell, twin = grid.launch.root / ROLL / name, grid.reference / ROLL / name
        assert np.array_equal(np.load(cell / "samples.npz")["generated"], np.load(twin / "samples.npz")["generated"])
        assert (cell / "history.csv").read_text() == (twin / "history.csv").read_text()
        _check_wandb_parts(cell, resumed[name])


def _check_wandb_parts(cell: Path, record: dict) -> None:
    """Offline, each start of the cell wrote its own folder under the cell's run id; each resumption replaced the
    interrupted one (which held at most part of what the resumed run logs again), so one folder is left, with
    the config, the whole history (the part restored from the checkpoint logged again) and the summary."""
    folders = sorted((cell / "wandb").glob("offline-run-*"))
    run_id = wandb_run_id(cell)
    assert len(folders) == 1 and folders[0].name.endswith(f"-{run_id}")
    last = run_contents(folders[0], wait_s=0)  # every process that wrote it is gone
    with (cell / "history.csv").open(newline="") as f:
        history = [(int(r["step"]), float(r["train/loss_mse"])) for r in csv.DictReader(f) if r["train/loss_mse"]]

    def logged(part: dict) -> list[tuple[int, float]]:
        return [(row["_step"], row["train/loss_mse"]) for row in part["history"] if "train/loss_mse" in row]

    assert logged(last) == history
    assert last["id"] == last["config"]["wandb_run_id"] == run_id
    assert (last["group"], last["job_type"], last["tags"]) == ("slurm-grid", "toy", ["slurm", "requeue"])
    assert (last["config"]["alpha"], last["config"]["dataset"]) == (record["alpha"], "swiss_roll")
    assert last["summary"]["eval/sw1"] == pytest.approx(record["metrics"]["sw1"])
    assert last["summary"]["diag/grad_var"] == pytest.approx(record["metrics"]["grad_var"])
    assert "eval/fid" in last["summary"] and last["summary"]["eval/fid"] is None  # no FID on 2-D data


def test_relaunch_skips_recorded_cells_and_records_a_raising_cell_as_failed(grid: Grid, slurm_cluster: SlurmCluster):
    """Per-run re-launch into the grid's folder: two_moons alpha 1 is recorded, so its job is not submitted;
    alpha 0.5 finds its job checkpoint corrupt, so resuming it raises and the cell records the failure."""
    again: Relaunch = grid.relaunch.join()
    root = grid.launch.root
    rc, out = again.launch.wait()
    assert rc == 1 and f"checkpoint {again.corrupt} is corrupt or truncated" in out  # the launcher names it
    array = again.launch.array_id()
    # One job (alpha 1 is recorded: no task is spent on skipping it), so submitit submits it as a plain job, not
    # an array. Hydra catches the error inside the job and hands it back to the launcher: it ends COMPLETED.
    assert slurm_cluster.wait(array) == {array: "COMPLETED"}
    assert grid.launch.wait()[0] == 0
    after = _records(root)
    moons = {k: v for k, v in again.before.items() if k.startswith(f"{MOONS}/")}
    assert len(moons) == 2 and {k: after[k] for k in moons} == moons  # recorded cells untouched
    failed = after[str(again.failing.relative_to(root))]
    assert (failed["status"], failed["alpha"], failed["dataset"]) == ("failed", 0.5, "two_moons")
    assert f"checkpoint {again.corrupt} is corrupt or truncated" in failed["error"]
    assert re.search(r"planned cells: \d+ completed, 1 failed", out) and "#1 :" not in out
