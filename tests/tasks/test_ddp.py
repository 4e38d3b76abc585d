"""Lightning DDP with the JVP: 2 CPU processes (gloo) keep identical parameters, and equal one process
trained on the combined batch (the latent DiT task's every-rank-draws-the-global-batch design).

The test runs this file as a script (`python tests/tasks/test_ddp.py OUT DEVICES`): Lightning's `ddp` strategy
starts the second process by running the same command again, as it does for `mfsweep-train`.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
from hydra import compose, initialize_config_dir

from mfsweep.config import CONF_DIR
from mfsweep.tasks import build_task
from mfsweep.tasks.latent import LatentDiTTask

STEPS = 3
# Guidance on, the EMA tangent at alpha = 0.5 and the anchor: every part of the loss crosses the sync. FID at
# step 2 runs on rank 0 alone while rank 1 waits in the next step's all-reduce.
OVERRIDES = [
    "experiment=digits_dit", "model.depth=1", "model.hidden_size=32", "model.num_heads=2", "trainer.batch_size=8",
    "tangent.ema_decay=0.5", "loss.anchor_weight=0.1", "diagnostics.every=0", "grad_var.every=0",
    "eval.every=2", "eval.every_n_samples=20", "eval.fid_samples=40",
]


class _FirstBatch(LatentDiTTask):
    """Keeps the first training batch this process drew (its rows of the global batch)."""

    def draw_batch(self, purpose: str = "train", batch_size: int | None = None):
        batch = super().draw_batch(purpose, batch_size)
        if purpose == "train" and not hasattr(self, "first"):
            self.first = batch
        return batch


class _Dump(L.Callback):
    def __init__(self, out: Path):
        self.out = out

    def on_train_end(self, trainer: L.Trainer, task: _FirstBatch) -> None:
        f = task.first
        fid = [row["eval/fid"] for row in task.history[0] if "eval/fid" in row]
        torch.save({"params": {k: v.detach().clone() for k, v in task.model.named_parameters()},
                    "batch": {k: getattr(f, k) for k in ("x", "e", "t", "r", "y")}, "fid": fid},
                   self.out / f"rank{trainer.global_rank}-of-{trainer.world_size}.pt")


def _cfg(out: Path):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=OVERRIDES + [f"metrics.fid.cache_dir={out / 'cache'}"])


def fit(out: Path, devices: int) -> None:
    task = build_task(_cfg(out), [0.5], [0], cls=_FirstBatch)
    trainer = L.Trainer(
        accelerator="cpu", devices=devices, strategy="ddp" if devices > 1 else "auto", max_steps=STEPS,
        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        callbacks=[_Dump(out)],
    )
    trainer.fit(task)


def test_two_ddp_processes_match_each_other_and_one_process_on_the_whole_batch(tmp_path):
    proc = subprocess.Popen([sys.executable, __file__, str(tmp_path), "2"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    fit(tmp_path, devices=1)  # meanwhile, the single process
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    r0, r1, single = (torch.load(tmp_path / f"rank{r}.pt", weights_only=False)
                      for r in ("0-of-2", "1-of-2", "0-of-1"))
    # Each rank trained on its own half of the same global batch ...
    for k in ("x", "e", "t", "r", "y"):
        torch.testing.assert_close(torch.cat([r0["batch"][k], r1["batch"][k]]), single["batch"][k], rtol=0, atol=0)
    assert not torch.equal(r0["batch"]["x"], r1["batch"]["x"])
    # ... yet the parameters agree exactly across ranks (the gradients were all-reduced) ...
    init = dict(build_task(_cfg(tmp_path), [0.5], [0], cls=_FirstBatch).model.named_parameters())
    moved = 0
    for name, p in r0["params"].items():
        assert torch.equal(p, r1["params"][name]), f"{name} differs across ranks"
        # ... and equal the single process's on the combined batch, up to reduction order.
        torch.testing.assert_close(p, single["params"][name], rtol=1e-4, atol=1e-6, msg=f"{name} vs one process")
        moved += int(not torch.equal(p, init[name]))
    assert moved > 0.9 * len(r0["params"]), "training barely changed the parameters; the check proves little"
    # FID at step 2: rank 0 alone scored, the same as the single process.
    assert len(r0["fid"]) == 1 and r1["fid"] == [] and r0["fid"][0] == pytest.approx(single["fid"][0], rel=1e-3)


if __name__ == "__main__":
    fit(Path(sys.argv[1]), int(sys.argv[2]))
