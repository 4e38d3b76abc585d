"""End to end: configs composed in-process, the real task, trainer and records; the CLI contract in a
subprocess."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import ot
import pytest
import torch
from conftest import TINY, compose_cfg

from mfsweep.cli.train import train
from mfsweep.metrics.sliced import projections
from mfsweep.sweep.record import read_record
from mfsweep.tasks.vector import VectorTask

CLI = [sys.executable, "-m", "mfsweep.cli.train"]


def _records(root: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(root.rglob("result.json"))]


def test_tiny_sweep_records_and_samples_recompute_with_pot(tiny_sweep):
    records = _records(tiny_sweep)
    assert sorted((r["alpha"], r["seed"]) for r in records) == [(a, s) for a in (0.0, 0.5, 1.0) for s in (0, 1)]
    for path in tiny_sweep.rglob("result.json"):
        rec = read_record(path.parent)
        assert rec["status"] == "completed" and rec["steps"] == 40
        assert rec["tangent"] == {"name": "ema", "ema_decay": 0.99} and rec["schema"] == 2
        assert rec["alpha_schedule"] == {"name": "constant", "value": rec["alpha"]}
        assert rec["alpha_trajectory"] == {"start": rec["alpha"], "end": rec["alpha"], "mean": rec["alpha"]}
        assert rec["execution"] == {"members_in_job": 6, "mode": "packed"}
        s = np.load(path.parent / rec["eval"]["samples_file"])
        assert s["generated"].shape == s["reference"].shape == (400, 2)
        p = projections(2, rec["eval"]["n_projections"], rec["eval"]["projection_seed"])
        pot = ot.sliced_wasserstein_distance(s["generated"].astype(float), s["reference"].astype(float), projections=p, p=1)
        assert rec["metrics"]["sw1"] == pytest.approx(pot, rel=1e-5)
        history = (path.parent / rec["history"]).read_text().splitlines()
        assert history[0].startswith("step,") and "train/loss_mse" in history[0] and len(history) == 5
        assert (path.parent / "config.yaml").read_text().count(f"value: {rec['alpha']}") == 1


def test_same_seed_shares_reference_and_noise_across_alphas(tiny_sweep):
    """Common random numbers: cells with one seed see the same reference set whatever their alpha."""
    refs = {p.parent.name: np.load(p.parent / "samples.npz")["reference"] for p in tiny_sweep.rglob("result.json")}
    assert np.array_equal(refs["alpha=0,seed=1"], refs["alpha=1,seed=1"])
    assert not np.array_equal(refs["alpha=0,seed=0"], refs["alpha=0,seed=1"])


def test_packed_member_equals_per_run_cell(tmp_path):
    packed = compose_cfg(*TINY, "tangent=ema", "alpha.value=[0.0,0.7]", "seed=[0,3]")
    single = compose_cfg(*TINY, "tangent=ema", "alpha.value=0.7", "seed=3")
    rec_packed = {(r["alpha"], r["seed"]): r for r in train(packed, tmp_path / "packed")}
    rec_single = train(single, tmp_path / "single")[0]
    twin = rec_packed[(0.7, 3)]
    assert twin["metrics"]["sw1"] == pytest.approx(rec_single["metrics"]["sw1"], rel=1e-4)
    assert twin["metrics"]["loss_mse"] == pytest.approx(rec_single["metrics"]["loss_mse"], rel=1e-4)


def test_first_batch_of_a_member_is_the_single_runs_batch():
    from mfsweep.data.toy import ToyDataset

    from mfsweep.method.proxy import ConditionalProxy
    from mfsweep.method.schedule import ConstantAlpha

    kw = dict(width=8, depth=2, batch_size=16, time_cfg={"dist": "uniform", "ratio": 0.5},
              loss=__import__("mfsweep.tasks.meanflow", fromlist=["LossConfig"]).LossConfig(),
              optim=__import__("mfsweep.tasks.meanflow", fromlist=["OptimConfig"]).OptimConfig())
    packed = VectorTask(ToyDataset("pinwheel"), ConstantAlpha(0.0, 3), [4, 5, 6], proxy=ConditionalProxy(3), **kw)
    single = VectorTask(ToyDataset("pinwheel"), ConstantAlpha(0.0, 1), [5], proxy=ConditionalProxy(1), **kw)
    bp, bs = packed.draw_batch(), single.draw_batch()
    for name in ("x", "e", "t", "r"):
        assert torch.equal(getattr(bp, name)[1], getattr(bs, name)[0])
    for wp, ws in zip(packed.model.parameters(), single.model.parameters()):
        assert torch.equal(wp[1], ws[0])


def test_rerun_skips_completed_cells_unless_asked(tmp_path):
    cfg = compose_cfg(*TINY, "alpha.value=0.0", "seed=2")
    first = train(cfg, tmp_path)
    assert len(first) == 1
    assert train(cfg, tmp_path) == []
    again = train(compose_cfg(*TINY, "alpha.value=0.0", "seed=2", "sweep.rerun=all"), tmp_path)
    assert again[0]["metrics"]["sw1"] == first[0]["metrics"]["sw1"]  # deterministic on the CPU


def test_a_cell_that_raises_is_recorded_as_failed(tmp_path, monkeypatch):
    def boom(self, *a, **k):
        raise RuntimeError("evaluation exploded")

    monkeypatch.setattr(VectorTask, "evaluate", boom)
    with pytest.raises(RuntimeError, match="exploded"):
        train(compose_cfg(*TINY, "alpha.value=0.0", "seed=0"), tmp_path)
    (rec,) = _records(tmp_path)
    assert rec["status"] == "failed" and "RuntimeError: evaluation exploded" in rec["error"]
    # A failed cell is re-run only when asked.
    monkeypatch.undo()
    assert train(compose_cfg(*TINY, "alpha.value=0.0", "seed=0"), tmp_path) == []
    assert train(compose_cfg(*TINY, "alpha.value=0.0", "seed=0", "sweep.rerun=failed"), tmp_path)[0]["status"] == "completed"


def test_a_diverging_member_is_recorded_and_the_others_finish(tmp_path, monkeypatch):
    """Member 1 starts from huge weights, its loss overflows at step 1; members 0 and 2 train on."""
    original = VectorTask.__init__

    def poisoned(self, *a, **k):
        original(self, *a, **k)
        with torch.no_grad():
            for w in self.model.weights:
                w[1].fill_(1e30)

    monkeypatch.setattr(VectorTask, "__init__", poisoned)
    records = train(compose_cfg(*TINY, "tangent=ema", "alpha.value=[0.0,0.5,1.0]", "seed=0"), tmp_path)
    status = {r["alpha"]: r for r in records}
    assert status[0.5]["status"] == "diverged" and status[0.5]["diverged_step"] == 1
    assert status[0.5]["metrics"]["sw1"] is None
    for a in (0.0, 1.0):
        assert status[a]["status"] == "completed" and status[a]["steps"] == 40 and status[a]["metrics"]["sw1"] > 0
    assert _sw1_recomputed_with_pot(tmp_path) == {0.0: status[0.0]["metrics"]["sw1"], 1.0: status[1.0]["metrics"]["sw1"]}


BAD_INPUTS = [
    ("alpha.value=1.5", "alpha.value"),
    ("alpha.value=[0.0,-0.1]", "alpha.value"),
    ("tangent=conditional alpha.value=0.5", "alpha.value"),  # vanilla MeanFlow has no proxy to mix in
    ("dataset.name=spiral_galaxy", "dataset.name"),
    ("tangent._target_=mfsweep.method.proxy.LearnedProxy", "tangent._target_"),
    ("tangent=oracle", "tangent"),  # swiss_roll has no exact posterior here
    ("tangent=ema tangent.ema_decay=1.0", "tangent.ema_decay"),
    ("tangent=ema +tangent.decay=0.9", "tangent.decay"),  # not a key of the proxy
    ("alpha=linear alpha.end=2", "alpha.end"),
    ("alpha=adaptive alpha.every=0", "alpha.every"),
    ("tangent=velocity_head alpha.value=1.5", "alpha.value"),
    ("tangent=conditional alpha=cosine", "alpha"),
    ("trainer.max_steps=0", "trainer.max_steps"),
    ("trainer.batch_size=-4", "trainer.batch_size"),
    ("model.width=0", "model.width"),
    ("time.ratio=1.5", "time.ratio"),
    ("trainer.ema_decay=2", "trainer.ema_decay"),
    ("loss.offset=-0.1", "loss.offset"),
    ("trainer.lr=0", "trainer.lr"),
    ("sweep.rerun=sometimes", "sweep.rerun"),
    ("seed=1.5", "seed"),
    ("verdict.margin=0", "verdict.margin"),
    ("verdict.margin=1.5", "verdict.margin"),
]


@pytest.mark.parametrize("override,key", BAD_INPUTS)
def test_bad_input_fails_before_training_naming_the_key(tmp_path, override, key):
    with pytest.raises(ValueError) as err:  # ConfigError, or a component's ConfigValueError
        train(compose_cfg(*TINY, *override.split()), tmp_path)
    assert err.value.key == key, err.value
    assert not any(tmp_path.iterdir())  # nothing trained, nothing written


def _cli(tmp_path: Path, *args: str, multirun: bool = False) -> subprocess.CompletedProcess:
    dirs = [f"hydra.sweep.dir={tmp_path}"] if multirun else [f"hydra.run.dir={tmp_path}"]
    cmd = CLI + (["-m"] if multirun else []) + list(args) + dirs
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def test_cli_contract_single_run(tmp_path):
    proc = _cli(tmp_path, "dataset=swiss_roll", "tangent=ema", "alpha.value=0.5", "seed=1", "trainer.max_steps=300",
                "logger=csv", "eval.n_samples=1000", "trainer.progress=false")
    assert proc.returncode == 0, proc.stderr[-2000:]
    (rec,) = _records(tmp_path)
    assert (rec["status"], rec["alpha"], rec["seed"], rec["steps"], rec["tangent"]["name"]) == ("completed", 0.5, 1, 300, "ema")
    assert _sw1_recomputed_with_pot(tmp_path) == {0.5: rec["metrics"]["sw1"]}


def test_cli_multirun_two_by_two_with_a_diverging_job(tmp_path):
    """Per-run multirun over alpha x seed; a lr sweep makes one pair of jobs diverge, the rest complete."""
    proc = _cli(tmp_path, "tangent=ema", "alpha.value=0.0,1.0", "seed=0,1", "trainer.lr=1e-3,1e30", *TINY, multirun=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    records = _records(tmp_path)
    assert len(records) == 8
    by_lr = {}
    for path in tmp_path.rglob("result.json"):
        by_lr.setdefault("lr=0.001" not in str(path), []).append(json.loads(path.read_text()))
    assert {r["status"] for r in by_lr[False]} == {"completed"}
    assert {r["status"] for r in by_lr[True]} == {"diverged"}
    assert all(r["diverged_step"] <= 3 for r in by_lr[True])


@pytest.mark.parametrize("override,group", [("dataset=spiral_galaxy", "dataset"), ("model=resnet", "model"),
                                             ("tangent=learned", "tangent"), ("logger=mlflow", "logger")])
def test_unknown_group_option_names_the_group(override, group):
    from hydra.errors import MissingConfigException

    with pytest.raises(MissingConfigException, match=f"Could not find '{group}/"):
        compose_cfg(override)


def _sw1_recomputed_with_pot(root: Path) -> dict[float, float]:
    """alpha -> the recorded SW1 of every completed cell under `root`, after checking it against POT's
    `sliced_wasserstein_distance` on the cell's samples.npz (issue 15: these tests asserted sw1 > 0)."""
    out = {}
    for path in root.rglob("result.json"):
        rec = json.loads(path.read_text())
        if rec["status"] != "completed":
            continue
        s = np.load(path.parent / rec["eval"]["samples_file"])
        p = projections(s["generated"].shape[1], rec["eval"]["n_projections"], rec["eval"]["projection_seed"])
        pot = ot.sliced_wasserstein_distance(s["generated"].astype(float), s["reference"].astype(float), projections=p, p=1)
        assert rec["metrics"]["sw1"] == pytest.approx(pot, rel=1e-5) and pot > 1e-3
        out[rec["alpha"]] = rec["metrics"]["sw1"]
    return out
