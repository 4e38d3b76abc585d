"""The local SLURM of scripts/slurm (tests/slurm_cluster.py): jobs run and accounting reads their states."""
from __future__ import annotations

import os
import time

import pytest
import submitit

import slurm_cluster as cluster_module
from slurm_cluster import JobGate, SlurmCluster


@pytest.mark.slurm
def test_wrap_job_completes(slurm_cluster: SlurmCluster, tmp_path) -> None:
    out = tmp_path / "out.txt"
    job = slurm_cluster.sbatch("--wrap", f"echo hello from $SLURM_JOB_ID > {out}")
    assert slurm_cluster.wait(job) == {job: "COMPLETED"}
    assert out.read_text() == f"hello from {job}\n"


@pytest.mark.slurm
def test_array_tasks_each_complete(slurm_cluster: SlurmCluster, tmp_path) -> None:
    job = slurm_cluster.sbatch(
        "--array=0-2", f"--output={tmp_path}/%a.out", "--wrap", "echo $SLURM_ARRAY_TASK_ID"
    )
    assert slurm_cluster.wait(job) == {f"{job}_{task}": "COMPLETED" for task in range(3)}
    assert [(tmp_path / f"{task}.out").read_text() for task in range(3)] == ["0\n", "1\n", "2\n"]


@pytest.mark.slurm
def test_exit_1_reads_failed(slurm_cluster: SlurmCluster) -> None:
    job = slurm_cluster.sbatch("--wrap", "exit 1")
    assert slurm_cluster.wait(job) == {job: "FAILED"}


@pytest.mark.slurm
def test_cancelled_job_reads_cancelled_and_wait_times_out(slurm_cluster: SlurmCluster) -> None:
    job = slurm_cluster.sbatch("--wrap", "sleep 60")
    with pytest.raises(TimeoutError, match=f"job {job} still active after 0.5 s"):
        slurm_cluster.wait(job, timeout=0.5)
    assert slurm_cluster.run("scancel", job).returncode == 0
    assert slurm_cluster.wait(job) == {job: "CANCELLED"}


@pytest.mark.slurm
def test_gated_jobs_run_held_until_released_or_cancelled(slurm_cluster: SlurmCluster, tmp_path) -> None:
    gate = JobGate.create(tmp_path / "gate")
    try:  # the node has 2 CPUs: two jobs held at once fill it
        array = slurm_cluster.sbatch("--array=0-1", f"--output={tmp_path}/%a.out", "--wrap",
                                     f"sh {gate.dir}/gate.sh && echo past the gate")
        for job in (f"{array}_0", f"{array}_1"):  # the ids submitit names its task folders by
            assert gate.wait_held(job, timeout=60) == job
        queue = slurm_cluster.run("squeue", "-h", "-r", "-j", array, "-o", "%i %T").stdout  # sacct may lag behind
        assert sorted(queue.splitlines()) == [f"{array}_0 RUNNING", f"{array}_1 RUNNING"]
        gate.release(f"{array}_0")
        assert slurm_cluster.run("scancel", f"{array}_1").returncode == 0
        assert slurm_cluster.wait(array) == {f"{array}_0": "COMPLETED", f"{array}_1": "CANCELLED"}
        assert (tmp_path / "0.out").read_text() == "past the gate\n"
        assert "past the gate" not in (tmp_path / "1.out").read_text()  # slurmstepd's cancel line may be there
        alone = slurm_cluster.sbatch(f"--output={tmp_path}/alone.out", "--wrap", f"sh {gate.dir}/gate.sh")
        assert gate.wait_held(besides={f"{array}_0", f"{array}_1"}, timeout=60) == alone
        gate.open()
        assert slurm_cluster.wait(alone) == {alone: "COMPLETED"} and not gate.held(alone)
    finally:
        gate.open()  # no job stays held, keeping the node from later tests


@pytest.mark.slurm
def test_submitit_runs_a_function_and_reads_completed(slurm_cluster: SlurmCluster, tmp_path) -> None:
    executor = submitit.AutoExecutor(folder=tmp_path / "submitit")
    assert executor.cluster == "slurm"
    executor.update_parameters(slurm_partition=slurm_cluster.partition, timeout_min=5)

    def square_in_job(x: int) -> tuple[int, str]:
        return x * x, os.environ["SLURM_JOB_ID"]

    job = executor.submit(square_in_job, 7)
    deadline = time.monotonic() + 40
    # job.result() has no timeout: poll, so that a broken cluster fails the test instead of hanging it.
    while not job.done():
        if time.monotonic() > deadline:
            job.cancel(check=False)
            pytest.fail(f"submitit job {job.job_id} not done after 40 s: {slurm_cluster.states(job.job_id)}")
        time.sleep(0.25)
    assert job.result() == (49, job.job_id)
    # job.state is submitit's cached sacct answer, refreshed every few seconds.
    while job.state != "COMPLETED" and time.monotonic() < deadline:
        time.sleep(0.5)
    assert job.state == "COMPLETED"


def test_unavailable_skips_outside_ci(monkeypatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="local SLURM unavailable: no apt"):
        cluster_module._unavailable("no apt")


def test_unavailable_fails_under_ci(monkeypatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="required under CI=true but unavailable: no apt"):
        cluster_module._unavailable("no apt")
