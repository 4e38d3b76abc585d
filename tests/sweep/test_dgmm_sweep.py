"""`sweeps/dgmm_grid.yaml` launches as documented (sweeps/README.md): a primary config on top of conf/, its
grid packed per dim, command-line values winning over the file's (here a 2 x 2 x 1 grid at a tiny scale)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import ot
import pytest
from conftest import compose_cfg
from hydra import compose, initialize_config_dir

from mfsweep.config import CONF_DIR
from mfsweep.metrics.sliced import projections

SWEEPS = Path(__file__).resolve().parents[2] / "sweeps"


def _compose_sweep_file(*overrides: str):
    """The sweep file composed as `--config-dir sweeps --config-name dgmm_grid` composes it: from sweeps/, with
    conf/ (mfsweep-train's own config dir) on the search path."""
    with initialize_config_dir(config_dir=str(SWEEPS), version_base="1.3"):
        return compose("dgmm_grid", overrides=[f"hydra.searchpath=[file://{CONF_DIR}]", *overrides],
                       return_hydra_config=True)


def test_dgmm_grid_file_holds_the_documented_grid():
    cfg = _compose_sweep_file()
    params = cfg.hydra.sweeper.params
    assert params["dataset.dim"] == "2,8,32,128" and params["seed"] == "0,1,2"
    assert params["alpha.value"] == ",".join(f"{a / 10:.1f}" for a in range(11))
    assert (cfg.dataset.name, cfg.tangent._target_, cfg.sweep.mode) == ("dgmm", "mfsweep.method.proxy.EMAProxy", "packed")
    assert cfg.diagnostics.every > 0 and cfg.loss.anchor_weight == 0.0 and cfg.loss.adaptive_p == 1.0
    # the mixtures' own recipe (docs/dgmm.md, "The recipe"), with about 10 checkpoints for the matched steps
    assert (cfg.time.dist, cfg.time.ratio, cfg.trainer.max_steps, cfg.trainer.ema_decay) == ("logit_normal", 0.25, 3000, 0.99)
    assert cfg.trainer.max_steps // cfg.eval.every == 10
    assert cfg.dataset == compose_cfg("dataset=dgmm").dataset                 # the documented dgmm defaults


def test_dgmm_grid_launch_line_trains_packed_jobs_per_dim(tmp_path):
    cmd = [sys.executable, "-m", "mfsweep.cli.entry", "-m", "--config-dir", str(SWEEPS), "--config-name", "dgmm_grid",
           "dataset.dim=2,3", "alpha.value=0.0,1.0", "seed=0", "trainer.max_steps=20", "trainer.progress=false",
           "diagnostics.every=10", "diagnostics.batch_size=32", "grad_var.every=0", "model.width=16",
           "eval.estimator=samples", "eval.n_samples=200", "eval.n_projections=20", f"hydra.sweep.dir={tmp_path}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = {p.relative_to(tmp_path).parent: json.loads(p.read_text()) for p in tmp_path.rglob("result.json")}
    assert len(records) == 4
    for path, rec in records.items():
        assert path.parts[0].startswith(f"dataset.dim={rec['dim']},") and rec["dim"] in (2, 3)
        assert (rec["status"], rec["dataset"], rec["tangent"]["name"], rec["steps"]) == ("completed", "dgmm", "ema", 20)
        assert rec["execution"] == {"members_in_job": 2, "mode": "packed"}
        assert rec["diagnostics"]["alpha_star_ub"] is not None and rec["diagnostics"]["bias2"] > 0
        # real values, not signs: alpha* from the record's own c, sigma^2, bias^2 by docs/method.md 4 ...
        d = rec["diagnostics"]
        assert d["kappa"] == pytest.approx(1 - 1 / d["c"], rel=1e-6, abs=1e-9)
        js = d["sigma2"] / (d["sigma2"] + d["bias2"])
        assert d["alpha_star_scalar"] == pytest.approx(min(max(d["kappa"] * js, 0.0), 1.0), rel=1e-6, abs=1e-9)
        # ... and SW1 against POT on the cell's samples.npz
        s = np.load(tmp_path / path / rec["eval"]["samples_file"])
        p = projections(rec["dim"], rec["eval"]["n_projections"], rec["eval"]["projection_seed"])
        pot = ot.sliced_wasserstein_distance(s["generated"].astype(float), s["reference"].astype(float), projections=p, p=1)
        assert rec["metrics"]["sw1"] == pytest.approx(pot, rel=1e-5)
