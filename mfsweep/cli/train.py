"""`mfsweep-train`: train one grid cell, or a packed grid of alpha x seed cells, and write their records.

    mfsweep-train dataset=swiss_roll tangent=ema alpha.value=0.5 seed=1 trainer.max_steps=300
    mfsweep-train -m dataset=swiss_roll tangent=ema alpha.value=0.0,0.5,1.0 seed=0,1            # a job per cell
    mfsweep-train -m sweep.mode=packed dataset=swiss_roll tangent=ema alpha.value=0.0,0.5,1.0 seed=0,1  # one job
"""
from __future__ import annotations

import logging
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from mfsweep.cli.validate import as_list, validate
from mfsweep.data import make_vector_dataset
from mfsweep.sweep.atomic import write_bytes_atomic, write_csv_atomic, write_npz_atomic
from mfsweep.sweep.cells import Cell, context_name, needs_training, plan_cells
from mfsweep.sweep.plots import scatter_samples
from mfsweep.sweep.record import HISTORY, SAMPLES, make_record, write_record
from mfsweep.tasks.meanflow import LossConfig, OptimConfig
from mfsweep.tasks.progress import StepProgress
from mfsweep.tasks.tracking import CellTracking
from mfsweep.tasks.vector import GaussianMixtureTask, VectorTask

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"
log = logging.getLogger("mfsweep")


def build_task(cfg: DictConfig, cells: list[Cell]) -> VectorTask:
    data_kwargs = {k: v for k, v in OmegaConf.to_container(cfg.dataset).items() if k not in ("name", "task")}
    dataset = make_vector_dataset(cfg.dataset.name, **(data_kwargs if cfg.dataset.name == "dgmm" else {}))
    task_cls = GaussianMixtureTask if cfg.dataset.task == "dgmm" else VectorTask
    tr = cfg.trainer
    return task_cls(
        dataset, [c.alpha for c in cells], [c.seed for c in cells],
        width=cfg.model.width, depth=cfg.model.depth, batch_size=tr.batch_size,
        time_cfg=OmegaConf.to_container(cfg.time), proxy=cfg.tangent.name, log_every=tr.log_every,
        loss=LossConfig(**OmegaConf.to_container(cfg.loss)),
        optim=OptimConfig(
            lr=tr.lr, betas=tuple(tr.betas), weight_decay=tr.weight_decay, grad_clip=tr.grad_clip,
            eval_ema_decay=tr.ema_decay, proxy_ema_decay=cfg.tangent.get("ema_decay", 0.0),
        ),
    )


def cell_config(cfg: DictConfig, cell: Cell) -> dict[str, Any]:
    """The cell's resolved config (alpha and seed as single values), also the flat W&B config."""
    c = OmegaConf.to_container(cfg, resolve=True)
    c["alpha"]["value"], c["seed"] = cell.alpha, cell.seed
    return c


def _flat(cfg: DictConfig, cell: Cell, task: str) -> dict[str, Any]:
    return {"alpha": cell.alpha, "seed": cell.seed, "dataset": cfg.dataset.name, "tangent": cfg.tangent.name,
            "dim": cfg.dataset.dim, "model": cfg.model.name, "task": task, "cfg": cell_config(cfg, cell)}


def _tail_mean(rows: list[dict[str, float]], key: str, fraction: float = 0.1) -> float | None:
    values = [r[key] for r in rows if key in r]
    if not values:
        return None
    return float(np.mean(values[-max(1, int(len(values) * fraction)):]))


def train(cfg: DictConfig, root: Path, context: str = "") -> list[dict[str, Any]]:
    """Train the cells of one job under `root/context` and return their records."""
    _quiet()
    validate(cfg)
    cells = plan_cells(root, context, as_list(cfg.alpha.value), as_list(cfg.seed))
    todo = [c for c in cells if needs_training(c, cfg.sweep.rerun)]
    for c in cells:
        if c not in todo:
            log.info("skip %s: already recorded (sweep.rerun=%s)", c.dir, cfg.sweep.rerun)
    if not todo:
        return []
    task = build_task(cfg, todo)
    group = cfg.sweep.name or "-".join(Path(root).resolve().parts[-2:])
    tracking = CellTracking([c.dir for c in todo], [_flat(cfg, c, task.task_name) for c in todo],
                            OmegaConf.to_container(cfg.logger), group=group, job_type=task.task_name)
    label = f"{cfg.dataset.name} x{len(todo)}" if len(todo) > 1 else todo[0].name
    callbacks: list[L.Callback] = [tracking] + ([StepProgress(label)] if cfg.trainer.progress else [])
    trainer = L.Trainer(
        max_steps=cfg.trainer.max_steps, accelerator=cfg.trainer.accelerator, devices=cfg.trainer.devices,
        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        num_sanity_val_steps=0, limit_val_batches=0, callbacks=callbacks,
    )
    for c in todo:
        write_bytes_atomic(c.dir / "config.yaml", OmegaConf.to_yaml(cell_config(cfg, c)).encode())
    start = time.perf_counter()
    try:
        trainer.fit(task)
        results = task.evaluate(cfg.eval.n_samples, cfg.eval.n_projections, cfg.eval.projection_seed, cfg.eval.n_steps)
    except Exception as exc:
        wall = (time.perf_counter() - start) / len(todo)
        error = f"{type(exc).__name__}: {exc}"
        for c in todo:
            write_record(c.dir, _record(cfg, task, c, "failed", wall, error=error + "\n" + traceback.format_exc(limit=5)))
        tracking.finish([{}] * len(todo), [None] * len(todo), exit_code=1)
        raise
    wall = (time.perf_counter() - start) / len(todo)
    records, summaries, figures = [], [], []
    for i, (c, res) in enumerate(zip(todo, results)):
        diverged = task.diverged_step[i]
        history = task.history[i]
        if cfg.logger.name != "none":
            keys = sorted({k for row in history for k in row} - {"step"})
            write_csv_atomic(c.dir / HISTORY, history, ["step"] + keys)
        metrics = dict(res["metrics"]) if diverged is None else {}
        metrics["loss_mse"] = _tail_mean(history, "train/loss_mse")
        metrics["loss_weighted"] = _tail_mean(history, "train/loss_weighted")
        fig = None
        if diverged is None:
            write_npz_atomic(c.dir / SAMPLES, generated=res["generated"], reference=res["reference"])
            fig = scatter_samples(res["generated"][:5000], res["reference"][:5000], title=c.name)
        record = _record(cfg, task, c, "completed" if diverged is None else "diverged", wall,
                         diverged_step=diverged, metrics=metrics, eval_info=res["eval"] if diverged is None else {},
                         n_members=len(todo))
        write_record(c.dir, record)
        records.append(record)
        summaries.append({f"eval/{k}": v for k, v in metrics.items() if k in ("sw1", "sw2", "fid")})
        figures.append(fig)
        sw1 = metrics.get("sw1")
        log.info("cell %s: %s%s  (%s)", c.name, record["status"],
                 f" sw1={sw1:.4f} sw2={metrics['sw2']:.4f}" if sw1 is not None else f" at step {diverged}", c.dir)
    tracking.finish(summaries, figures)
    import matplotlib.pyplot as plt

    plt.close("all")
    return records


def _record(cfg: DictConfig, task: VectorTask, cell: Cell, status: str, wall: float, *, n_members: int = 1,
            error: str | None = None, diverged_step: int | None = None, metrics: dict | None = None,
            eval_info: dict | None = None) -> dict[str, Any]:
    steps = diverged_step if diverged_step is not None else (task.global_step if status != "failed" else task.global_step)
    return make_record(
        status=status, task=task.task_name, dataset=cfg.dataset.name, dim=cfg.dataset.dim, alpha=cell.alpha,
        seed=cell.seed, tangent=cfg.tangent.name, anchor_weight=cfg.loss.anchor_weight,
        adaptive_p=cfg.loss.adaptive_p, steps=steps, wall_s=wall, error=error, diverged_step=diverged_step,
        metrics=metrics, eval_info=eval_info, history=HISTORY if cfg.logger.name != "none" else None,
        extra={"execution": {"members_in_job": n_members, "mode": "packed" if n_members > 1 else "per_run"}},
    )


def _quiet() -> None:
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*(num_workers|does not have many workers|GPU available|TPU available).*")
    warnings.filterwarnings("ignore", message=".*The `srun` command is available.*")
    warnings.filterwarnings("ignore", message=".*isinstance\\(treespec, LeafSpec\\).*")


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def main(cfg: DictConfig) -> None:
    _quiet()
    hc = HydraConfig.get()
    multirun = hc.mode == RunMode.MULTIRUN
    root = Path(hc.sweep.dir if multirun else hc.run.dir)
    context = context_name(hc.overrides.task, list(cfg.sweep.packed_keys))
    train(cfg, root, context)


if __name__ == "__main__":
    main()
