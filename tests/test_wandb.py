"""Every cell logs to its own W&B run (offline), found inside the cell folder and read back from disk."""
from __future__ import annotations

import pytest
from conftest import TINY, compose_cfg
from wandb_files import run_contents

from mfsweep.cli.train import train

pytestmark = pytest.mark.wandb


def test_offline_runs_per_cell_hold_config_history_summary_and_plot(tmp_path):
    tiny = [o for o in TINY if o != "logger=csv"]
    cfg = compose_cfg(*tiny, "logger=wandb", "tangent=ema", "alpha.value=[0.0,1.0]", "seed=3", "sweep.name=wb-test")
    records = train(cfg, tmp_path, "dataset=swiss_roll")
    assert len(records) == 2
    for alpha in (0, 1):
        cell = tmp_path / "dataset=swiss_roll" / f"alpha={alpha},seed=3"
        (run_dir,) = (cell / "wandb").glob("offline-run-*")
        run = run_contents(run_dir)
        assert run["group"] == "wb-test" and run["job_type"] == "toy"
        assert {k: run["config"][k] for k in ("alpha", "seed", "dataset", "tangent", "dim")} == {
            "alpha": float(alpha), "seed": 3, "dataset": "swiss_roll", "tangent": "ema", "dim": 2}
        steps = [row["_step"] for row in run["history"] if "train/loss_mse" in row]
        assert steps == [10, 20, 30, 40]
        assert all(k.startswith(("train/", "eval/", "diag/", "_")) for row in run["history"] for k in row)
        record = next(r for r in records if r["alpha"] == alpha)
        assert run["summary"]["eval/sw1"] == pytest.approx(record["metrics"]["sw1"])
        assert run["summary"]["eval/samples/_type"] == "image-file"
        assert list((run_dir / "files" / "media" / "images").rglob("*.png"))
