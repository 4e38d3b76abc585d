"""Every cell logs to its own W&B run (offline), found inside the cell folder and read back from disk."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import TINY, compose_cfg
from wandb_files import run_contents

from mfsweep.cli.train import train
from mfsweep.tasks.tracking import wandb_run_id

pytestmark = pytest.mark.wandb


def test_offline_runs_per_cell_hold_config_history_summary_and_plot(tmp_path):
    tiny = [o for o in TINY if o != "logger=csv"]
    cfg = compose_cfg(*tiny, "logger=wandb", "tangent=ema", "alpha.value=[0.0,1.0]", "seed=3", "sweep.name=wb-test",
                      "logger.tags=[toy,demo]")
    records = train(cfg, tmp_path, "dataset=swiss_roll")
    assert len(records) == 2
    for alpha in (0, 1):
        cell = tmp_path / "dataset=swiss_roll" / f"alpha={alpha},seed=3"
        (run_dir,) = (cell / "wandb").glob("offline-run-*")
        run = run_contents(run_dir)
        assert (run["group"], run["job_type"], run["tags"]) == ("wb-test", "toy", ["toy", "demo"])
        assert run["id"] == run["config"]["wandb_run_id"] == wandb_run_id(cell) and run_dir.name.endswith(run["id"])
        assert {k: run["config"][k] for k in ("alpha", "seed", "dataset", "alpha_schedule", "tangent", "dim")} == {
            "alpha": float(alpha), "seed": 3, "dataset": "swiss_roll", "alpha_schedule": "constant", "tangent": "ema",
            "dim": 2}
        steps = [row["_step"] for row in run["history"] if "train/loss_mse" in row]
        assert steps == [10, 20, 30, 40]
        assert all(k.startswith(("train/", "eval/", "diag/", "_")) for row in run["history"] for k in row)
        record = next(r for r in records if r["alpha"] == alpha)
        for key, metric in (("eval/sw1", "sw1"), ("eval/sw2", "sw2"), ("diag/grad_var", "grad_var")):
            assert run["summary"][key] == pytest.approx(record["metrics"][metric]), key
        assert run["summary"]["eval/fid"] is None  # every task carries the key; 2-D data has no FID
        assert run["summary"]["eval/samples/_type"] == "image-file"
        assert list((run_dir / "files" / "media" / "images").rglob("*.png"))


def test_a_resumed_cell_continues_its_run_id_in_one_offline_folder(tmp_path):
    """Offline, resuming writes a new `offline-run-*-<id>` folder under the same id that logs the history
    restored from the checkpoint again, so it holds the whole history (even when the first part was lost with a
    killed job) and replaces the earlier folder: one part per cell to sync."""
    tiny = [o for o in TINY if o not in ("logger=csv", "trainer.max_steps=40")]
    first = train(compose_cfg(*tiny, "logger=wandb", "trainer.max_steps=20", "alpha.value=0.0", "seed=1"), tmp_path)
    assert first[0]["steps"] == 20  # its checkpoint (saved at the end of training) is where the second run resumes
    longer = compose_cfg(*tiny, "logger=wandb", "trainer.max_steps=40", "alpha.value=0.0", "seed=1", "sweep.rerun=all")
    (record,) = train(longer, tmp_path)
    assert record["steps"] == 40
    cell = tmp_path / "alpha=0,seed=1"
    folders = sorted((cell / "wandb").glob("offline-run-*"))
    (part,) = [run_contents(f) for f in folders]
    assert part["id"] == part["config"]["wandb_run_id"] == wandb_run_id(cell)
    assert [row["_step"] for row in part["history"] if "train/loss_mse" in row] == [10, 20, 30, 40]
    assert part["summary"]["eval/sw1"] == pytest.approx(record["metrics"]["sw1"])


def test_sigterm_to_the_job_and_its_wandb_service_stops_quietly_and_resumes_into_one_run(tmp_path):
    """As SLURM does on a preemption: SIGTERM reaches the trainer and wandb's service process together. The
    trainer checkpoints and exits 143 with one warning line, not wandb's `ConnectionResetError` traceback from
    its exit hook; the same command then resumes and completes the cell in one offline run folder."""
    tiny = [o for o in TINY if o not in ("logger=csv", "trainer.max_steps=40")]
    args = [sys.executable, "-m", "mfsweep.cli.entry", *tiny, "logger=wandb", "trainer.max_steps=300",
            "trainer.checkpoint_every=25", "alpha.value=0.5", "seed=3", f"hydra.run.dir={tmp_path}"]
    # its own service, as a job has (in-process tests leave this process's service address in WANDB_SERVICE)
    env = {k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"}
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 120
    while not list(tmp_path.rglob("last.ckpt")) and time.time() < deadline:
        time.sleep(0.02)
    # Frozen at its first checkpoint (step 25 of 300), so the signals land mid-training whatever the machine's
    # speed, and the resume has little left to train; the SIGTERM waits, pending, until SIGCONT.
    proc.send_signal(signal.SIGSTOP)
    (service,) = _children(proc.pid, "wandb-core")
    os.kill(service, signal.SIGTERM)
    proc.send_signal(signal.SIGTERM)
    proc.send_signal(signal.SIGCONT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err[-3000:]
    assert "stopped by SIGTERM at step" in out + err
    assert "Traceback" not in out + err and "Exception ignored" not in out + err, err[-3000:]
    done = subprocess.run(args, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    (cell,) = [p.parent for p in tmp_path.rglob("result.json")]
    (part,) = [run_contents(f) for f in (cell / "wandb").glob("offline-run-*")]
    assert part["summary"]["eval/sw1"] == pytest.approx(json.loads((cell / "result.json").read_text())["metrics"]["sw1"])


def _children(pid: int, name: str) -> list[int]:
    """Processes below `pid` whose command line contains `name` (from /proc)."""
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == parent:
                todo.append(int(entry.name))
                if name in cmd:
                    found.append(int(entry.name))
    return found


def test_the_report_logs_each_answer_and_the_paired_plot_as_one_sweep_level_run(tiny_sweep, tmp_path, capsys):
    """A sweep whose cells logged to W&B gets one `verdict` run in its group from mfsweep-report, holding what the
    report's verdict.json holds; a second report replaces it (one offline part per sweep folder)."""
    import shutil

    import yaml

    from mfsweep.cli.report import main

    sweep = tmp_path / "sweep"
    shutil.copytree(tiny_sweep, sweep)
    for path in sweep.rglob("alpha=*/config.yaml"):  # the same cells, as if trained with logger=wandb
        cfg = yaml.safe_load(path.read_text())
        cfg["logger"] = {"name": "wandb", "offline": True, "project": "mfsweep", "tags": ["toy"]}
        cfg["sweep"]["name"] = "wb-verdict"
        path.write_text(yaml.safe_dump(cfg))
    for _ in range(2):
        assert main([str(sweep)]) == 0
    assert "W&B verdict run: " in capsys.readouterr().out
    (run_dir,) = (sweep / "wandb").glob("offline-run-*")
    run = run_contents(run_dir)
    (entry,) = json.loads((sweep / "verdict.json").read_text())["settings"]
    assert (run["group"], run["job_type"], run["tags"], run["id"]) == ("wb-verdict", "verdict", ["toy"],
                                                                        wandb_run_id(sweep))
    assert run["summary"]["verdict/swiss_roll/answer"] == entry["answer"]
    assert run["summary"]["verdict/swiss_roll/best_alpha"] == entry["best_alpha"]
    assert run["summary"]["verdict/table/_type"] == "table-file"
    assert run["summary"]["verdict/sw1_paired/_type"] == "image-file"
    (table,) = (run_dir / "files" / "media" / "table").rglob("*.table.json")
    rows = json.loads(table.read_text())
    assert rows["columns"][:3] == ["setting", "metric", "answer"]
    assert rows["data"][0][:3] == ["swiss_roll", "sw1", entry["answer"]]
    assert rows["data"][0][-1] == entry["sentence"]
