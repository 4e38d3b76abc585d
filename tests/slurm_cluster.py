"""Session fixture `slurm_cluster`: a real single-node SLURM with accounting, local to the test run.

It runs scripts/slurm/install.sh and start.sh in a temporary folder, points SLURM_CONF at it and
stops every daemon (cancelling leftover jobs) at teardown. Where that cannot be done (not root, no
apt, a failed start) the tests that use it are skipped with the reason, except under CI=true,
where the same reason fails them. Import the fixture from a conftest:
``from slurm_cluster import slurm_cluster  # noqa: F401``.

`JobGate` holds a sweep's SLURM jobs RUNNING in their setup, before submitit starts Python, until the test
releases them: a test cancels a running job that cannot have finished first, however fast the machine.
"""
from __future__ import annotations

import os
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Collection, Iterator

import pytest

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts" / "slurm"
PARTITION = "debug"
# sacct states of a job (or array task) that may still run; every other state is final.
ACTIVE_STATES = {"PENDING", "RUNNING", "REQUEUED", "RESIZING", "SUSPENDED", "COMPLETING", "CONFIGURING"}


@dataclass(frozen=True)
class SlurmCluster:
    """A running local cluster: its folder, its slurm.conf and its (default) partition."""

    dir: Path
    conf: Path
    partition: str

    def run(self, *command: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        """Runs a SLURM client command against this cluster (whatever SLURM_CONF says meanwhile)."""
        env = {**os.environ, "SLURM_CONF": str(self.conf)}
        return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=30)

    def sbatch(self, *args: str) -> str:
        """Submits `sbatch ARGS` from DIR/jobs (where default outputs land); returns the job id."""
        jobs = self.dir / "jobs"
        jobs.mkdir(exist_ok=True)
        done = self.run("sbatch", "--parsable", *args, cwd=jobs)
        if done.returncode != 0:
            raise RuntimeError(f"sbatch {' '.join(args)} failed: {done.stderr.strip()}")
        return done.stdout.strip().split(";")[0]

    def states(self, job_id: str) -> dict[str, str]:
        """sacct's state of job `job_id`, one entry per array task ('12_0': 'COMPLETED'), steps left out."""
        done = self.run("sacct", "-n", "-X", "-P", "-j", job_id, "-o", "JobID,State")
        if done.returncode != 0:
            raise RuntimeError(f"sacct -j {job_id} failed: {done.stderr.strip()}")
        rows = (line.split("|") for line in done.stdout.splitlines() if line)
        # 'CANCELLED by 0' -> 'CANCELLED'
        return {jid: state.split()[0] for jid, state in rows}

    def task_ids(self, job_id: str) -> set[str] | None:
        """The ids sacct lists for job `job_id` once its accounting has caught up, as slurmctld knows them: one
        per array task ('12_0'), or the job's own; None where it cannot tell (an array not split into tasks, a
        job it has forgotten, MinJobAge after its end)."""
        done = self.run("scontrol", "-o", "show", "job", job_id)
        if done.returncode != 0 or not done.stdout.strip():
            return None
        ids = set()
        for line in done.stdout.splitlines():
            job, array, task = (re.search(rf"\b{key}=(\S+)", line) for key in ("JobId", "ArrayJobId", "ArrayTaskId"))
            if not (array and task):
                ids.add(job[1])
            elif task[1].isdigit():
                ids.add(f"{array[1]}_{task[1]}")
            else:
                return None
        return ids

    def wait(self, job_id: str, timeout: float = 30.0) -> dict[str, str]:
        """Waits until no part of job `job_id` can run any more and accounting lists each of its array tasks
        (sacct lags behind slurmctld: an array's tasks can show as one row of the whole array for a while);
        returns its final `states`."""
        deadline = time.monotonic() + timeout
        while True:
            queued = self.run("squeue", "-h", "-j", job_id).stdout.strip()
            states = self.states(job_id)
            if not queued and states and not ACTIVE_STATES & set(states.values()) \
                    and self.task_ids(job_id) in (None, set(states)):
                return states
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still active after {timeout} s: {states}")
            time.sleep(0.25)


# A job's setup line (launcher.setup) runs this: the job, RUNNING, says it is held and waits, before its Python
# starts, until its own release file or the gate's `open` exists. Its id is the one submitit names its folder
# (and plan.json its cells' array_task) by: <array>_<task>, or <job> for a job submitted alone.
GATE_SCRIPT = """\
gate=$(dirname "$0")
job=${SLURM_ARRAY_JOB_ID:+${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}}
job=${job:-$SLURM_JOB_ID}
touch "$gate/$job.held"
until [ -e "$gate/open" ] || [ -e "$gate/$job.go" ]; do sleep 0.1; done
"""


@dataclass(frozen=True)
class JobGate:
    """Holds every job of a launch that carries `override` in its setup, RUNNING, until `release` lets that job
    go on (or `open` every job, later ones included). A held job trains nothing, so `scancel` of it lands
    while it runs whatever the machine's speed; its cells stay cheap to train on the relaunch."""

    dir: Path

    @classmethod
    def create(cls, folder: Path) -> "JobGate":
        folder.mkdir(parents=True)
        (folder / "gate.sh").write_text(GATE_SCRIPT)
        return cls(folder)

    @property
    def override(self) -> str:
        return f"launcher.setup=['sh {self.dir / 'gate.sh'}']"

    def held(self, job: str) -> bool:
        """Whether `job` runs and waits at the gate (it has reached it and is not released)."""
        return (self.dir / f"{job}.held").exists() and not (self.dir / f"{job}.go").exists() \
            and not (self.dir / "open").exists()

    def wait_held(self, job: str | None = None, besides: Collection[str] = (), timeout: float = 300.0) -> str:
        """Waits until `job` (by default: any job not in `besides`) runs and waits at the gate; returns its id."""
        deadline = time.monotonic() + timeout
        while True:
            held = sorted(p.name.removesuffix(".held") for p in self.dir.glob("*.held"))
            held = [j for j in held if (j == job if job else j not in besides) and self.held(j)]
            if held:
                return held[0]
            if time.monotonic() > deadline:
                raise TimeoutError(f"{job or 'no new job'} held at the gate {self.dir} after {timeout} s")
            time.sleep(0.1)

    def release(self, job: str) -> None:
        (self.dir / f"{job}.go").touch()

    def open(self) -> None:
        (self.dir / "open").touch()


def _unavailable(reason: str) -> None:
    """Skips the test (fails it under CI=true, where the cluster is required) for `reason`."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"local SLURM is required under CI=true but unavailable: {reason}", pytrace=False)
    pytest.skip(f"local SLURM unavailable: {reason}")


def _script(name: str, *args: str, timeout: float) -> str | None:
    """Runs scripts/slurm/NAME ARGS; returns None on success, else why it failed."""
    try:
        done = subprocess.run([str(SCRIPTS / name), *args], capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"{name}: {err}"
    if done.returncode != 0:
        return f"{name} exited {done.returncode}: {done.stderr.strip()[-2000:]}"
    return None


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    """A running local SLURM (partition `debug`) with SLURM_CONF set for the session; stopped at the end."""
    if os.geteuid() != 0:
        _unavailable("needs root (apt install, and daemons that run as root and munge)")
    failure = _script("install.sh", timeout=900)
    if failure:
        _unavailable(failure)
    folder = tmp_path_factory.mktemp("slurm")
    failure = _script("start.sh", str(folder), timeout=300)
    if failure:
        _script("stop.sh", str(folder), "--cancel-jobs", timeout=300)  # what a timed-out start left
        _unavailable(failure)
    previous_conf = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(folder / "slurm.conf")
    try:
        yield SlurmCluster(dir=folder, conf=folder / "slurm.conf", partition=PARTITION)
    finally:
        if previous_conf is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = previous_conf
        failure = _script("stop.sh", str(folder), "--cancel-jobs", timeout=300)
        if failure:
            raise RuntimeError(f"could not stop the local SLURM in {folder}: {failure}")
