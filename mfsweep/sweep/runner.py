"""The per-cell lifecycle of one job, which `mfsweep-train` (mfsweep/cli/train.py) runs once its config is
valid: which cells to train (skip what is recorded, `sweep.rerun`; claim them against other jobs), training
them (resuming from the job's checkpoint), their records (completed, diverged or failed; the one place a record
is made), history, samples, W&B runs and figures.

Heavy libraries (Lightning, W&B, matplotlib, the tasks) are imported inside `run`, so importing this module
stays cheap.
"""
from __future__ import annotations

import hashlib
import logging
import signal
import time
import traceback
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import yaml
from omegaconf import DictConfig, OmegaConf

from mfsweep.sweep.atomic import StorageError, write_bytes_atomic, write_csv_atomic, write_npz_atomic
from mfsweep.sweep.cells import Cell, context_overrides, job_cells, needs_training, override_key, setting_keys
from mfsweep.sweep.lock import claim
from mfsweep.sweep.record import HISTORY, SAMPLES, make_record, prepare_cell, write_record

if TYPE_CHECKING:
    from mfsweep.tasks.meanflow import CellEval, MeanFlowModule

log = logging.getLogger("mfsweep")


def cell_config(cfg: DictConfig, cell: Cell) -> dict[str, Any]:
    """The cell's resolved config, with its own value of every per-member key (alpha, seed, its setting)."""
    c = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    for key, value in cell.values().items():
        OmegaConf.update(c, key, value, force_add=True)
    return OmegaConf.to_container(c)


def cell_setting(cell: Cell, context: dict[str, Any]) -> dict[str, Any]:
    """What tells the cell's setting apart in a report: the job's context overrides and the cell's own values
    of the swept per-member keys besides alpha and seed."""
    return context | dict(cell.setting)


def _context_values(overrides: Sequence[str], packed_keys: Sequence[str]) -> dict[str, Any]:
    """The job's context overrides as `{key: value}` (values parsed as YAML: numbers stay numbers)."""
    return {override_key(o): yaml.safe_load(o.split("=", 1)[1]) for o in context_overrides(overrides, packed_keys)
            if "=" in o}


def _flat(cfg: DictConfig, cell: Cell, task: MeanFlowModule, i: int, setting: dict[str, Any]) -> dict[str, Any]:
    """Cell `i`'s W&B config: flat keys to filter a dashboard by (the schedule and proxy by name; their keys are
    in `cfg`), then its whole config."""
    return {"alpha": cell.alpha, "seed": cell.seed, "dataset": cfg.dataset.name,
            "alpha_schedule": task.schedule.name, "tangent": task.proxy.name,
            "dim": cfg.dataset.dim, "model": cfg.model.name, "task": task.task_name, **dict(cell.setting),
            "setting": setting, "cfg": cell_config(cfg, cell)}


def _tail_mean(rows: list[dict[str, float]], key: str, fraction: float) -> float | None:
    """Mean of `key` over the last `fraction` of the rows that hold it (at least one row)."""
    values = [r[key] for r in rows if key in r]
    if not values:
        return None
    return float(np.mean(values[-max(1, int(round(len(values) * fraction))):]))


def checkpoint_path(root: Path, context: str, cells: list[Cell]) -> Path:
    """One checkpoint per job, named by the cells it trains, so the same command finds it again."""
    key = hashlib.sha1(",".join(c.name for c in cells).encode()).hexdigest()[:12]
    return (Path(root) / context if context else Path(root)) / "checkpoints" / key / "last.ckpt"


def run(cfg: DictConfig, root: Path, context: str = "", overrides: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Train the cells of one job (a valid config) under `root/context` and return their records (resuming
    from the job's last checkpoint when one exists). `overrides` are the job's command-line overrides: the
    per-member keys they name are part of each cell's setting (and folder), the others of the job's context."""
    packed_keys = list(cfg.sweep.packed_keys)
    cells = job_cells(root, context, cfg, setting_keys(overrides, packed_keys))
    todo = [c for c in cells if needs_training(c, cfg.sweep.rerun)]
    for c in cells:
        if c not in todo:
            log.info("skip %s: already recorded (sweep.rerun=%s)", c.dir, cfg.sweep.rerun)
    todo = claim(todo, OmegaConf.select(cfg, "launcher.timeout_min"), lambda c: needs_training(c, cfg.sweep.rerun))
    if not todo:
        return []
    for c in todo:
        prepare_cell(c.dir)
    import lightning as L
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    quiet()  # after the import: importing Lightning sets its loggers' levels

    from mfsweep.tasks import task_class
    from mfsweep.tasks.allocator import keep_freed_memory
    from mfsweep.tasks.checkpointing import LastCheckpoint
    from mfsweep.tasks.progress import StepProgress
    from mfsweep.tasks.tracking import CellTracking

    keep_freed_memory()
    task = task_class(cfg.dataset.task).from_config(cfg, [c.alpha for c in todo], [c.seed for c in todo],
                                                    [dict(c.setting) for c in todo])
    context_values = _context_values(overrides, packed_keys)
    settings = [cell_setting(c, context_values) for c in todo]
    group = cfg.sweep.name or "-".join(Path(root).resolve().parts[-2:])
    tracking = CellTracking([c.dir for c in todo], [_flat(cfg, c, task, i, st) for i, (c, st) in enumerate(zip(todo, settings))],
                            OmegaConf.to_container(cfg.logger), group=group, job_type=task.task_name,
                            names=[c.name.replace("/", " ") for c in todo])
    ckpt = checkpoint_path(root, context, todo)
    label = f"{cfg.dataset.name} x{len(todo)}" if len(todo) > 1 else todo[0].name
    last = LastCheckpoint(ckpt, cfg.trainer.checkpoint_every)
    callbacks: list[L.Callback] = [tracking, last]
    if cfg.trainer.progress:
        callbacks.append(StepProgress(label))
    tr = cfg.trainer
    trainer = L.Trainer(
        max_steps=tr.max_steps, accelerator=tr.accelerator, devices=tr.devices, num_nodes=tr.get("num_nodes", 1),
        strategy=tr.get("strategy", "auto"), precision=tr.get("precision", "32-true"),
        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        num_sanity_val_steps=0, limit_val_batches=0, callbacks=callbacks,
    )
    rank_zero = trainer.is_global_zero  # under DDP only rank 0 writes files and evaluates
    for c in todo if rank_zero else []:
        write_bytes_atomic(c.dir / "config.yaml", OmegaConf.to_yaml(cell_config(cfg, c)).encode())
    if ckpt.exists():
        log.info("resuming from %s", ckpt)
    start = time.perf_counter()
    try:
        trainer.fit(task, ckpt_path=last.resume_path())
        if not rank_zero:
            return []
        results = task.evaluate(**cfg.eval)
    except SIGTERMException:
        # Not a failure: the cells keep no record, and the same command resumes from the checkpoint.
        log.warning("stopped by SIGTERM at step %d; checkpoint %s", task.global_step, ckpt)
        tracking.interrupted()
        raise SystemExit(128 + signal.SIGTERM) from None
    except Exception as exc:
        if not rank_zero or isinstance(exc, StorageError):  # the disk's fault, not the cells': no failed record
            raise
        wall = (time.perf_counter() - start) / len(todo)
        error = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=5)}"
        for i, (c, st) in enumerate(zip(todo, settings)):
            write_record(c.dir, _record(cfg, task, i, c, st, "failed", wall, error=error, n_members=len(todo)))
        tracking.finish([{"error": error}] * len(todo), [None] * len(todo), exit_code=1)
        raise
    wall = (time.perf_counter() - start) / len(todo)
    records = [_finish_cell(cfg, task, i, c, st, res, wall, len(todo), draw=tracking.enabled)
               for i, (c, st, res) in enumerate(zip(todo, settings, results))]
    tracking.finish([r.pop("_summary") for r in records], [r.pop("_figure") for r in records])
    if tracking.enabled:
        import matplotlib.pyplot as plt

        plt.close("all")
    return records


def _finish_cell(cfg: DictConfig, task: MeanFlowModule, i: int, cell: Cell, setting: dict[str, Any], res: CellEval,
                 wall: float, n_members: int, draw: bool) -> dict[str, Any]:
    """Write one cell's history, samples and record; return the record (with its W&B summary, and its sample
    figure when `draw`: only the W&B run shows it)."""
    diverged = task.diverged_step[i]
    history = task.history[i]
    if cfg.logger.name != "none":
        keys = sorted({k for row in history for k in row} - {"step"})
        write_csv_atomic(cell.dir / HISTORY, history, ["step"] + keys)
    metrics = dict(res.metrics) if diverged is None else {}
    metrics["loss_mse"] = _tail_mean(history, "train/loss_mse", 0.1)
    metrics["loss_weighted"] = _tail_mean(history, "train/loss_weighted", 0.1)
    metrics["grad_var"] = _tail_mean(history, "diag/grad_var", 0.5)  # tail mean over the second half
    metrics["grad_var_total"] = _tail_mean(history, "diag/grad_var_total", 0.5)
    figure = None
    if diverged is None and res.arrays:
        write_npz_atomic(cell.dir / SAMPLES, **res.arrays)
        figure = _figure(res.arrays, cell.name) if draw else None
    status = "completed" if diverged is None else "diverged"
    diagnostics = task.diagnostics_summary(i)
    record = _record(cfg, task, i, cell, setting, status, wall, diverged_step=diverged, metrics=metrics,
                     eval_info=res.info if diverged is None else {}, diagnostics=diagnostics, n_members=n_members)
    write_record(cell.dir, record)
    sw1 = metrics.get("sw1")
    log.info("cell %s: %s%s  (%s)", cell.name, status,
             f" sw1={sw1:.4f} sw2={metrics['sw2']:.4f}" if sw1 is not None else (f" at step {diverged}" if diverged else ""),
             cell.dir)
    # Every cell carries the same summary keys (null where not measured, e.g. FID on 2-D data), so one
    # W&B dashboard serves every task.
    summary = {f"eval/{k}": metrics.get(k) for k in ("sw1", "sw2", "fid")}
    summary |= {f"diag/{k}": metrics.get(k) for k in ("grad_var", "grad_var_total")}
    summary |= {f"diag/{k}": v for k, v in (diagnostics or {}).items() if isinstance(v, float)}
    return record | {"_summary": summary, "_figure": figure}


def _figure(arrays: dict[str, Any], title: str) -> Any:
    """The samples plot for the cell's W&B run: a scatter of 2-D samples, or an image grid."""
    gen, ref = arrays.get("generated"), arrays.get("reference")
    if gen is not None and gen.ndim == 2 and gen.shape[1] >= 2:
        from mfsweep.report.plots import scatter_samples

        return scatter_samples(gen[:5000], None if ref is None else ref[:5000], title=title)
    if gen is not None and gen.ndim == 4:
        from mfsweep.report.sample_grid import image_grid

        return image_grid(gen[:64], title=title)
    return None


def _record(cfg: DictConfig, task: MeanFlowModule, i: int, cell: Cell, setting: dict[str, Any], status: str,
            wall: float, *,
            n_members: int, error: str | None = None, diverged_step: int | None = None, metrics: dict | None = None,
            eval_info: dict | None = None, diagnostics: dict | None = None) -> dict[str, Any]:
    own = cell.values()
    loss = {k: own.get(f"loss.{k}", cfg.loss[k]) for k in ("anchor_weight", "adaptive_p")}
    return make_record(
        status=status, task=task.task_name, dataset=cfg.dataset.name, dim=task.data_dim, alpha=cell.alpha,
        seed=cell.seed, alpha_schedule=task.schedule.spec(i), alpha_trajectory=task.schedule.trajectory(i),
        tangent=task.proxy.spec(i), anchor_weight=loss["anchor_weight"],
        adaptive_p=loss["adaptive_p"], steps=diverged_step if diverged_step is not None else task.global_step,
        wall_s=wall, error=error, diverged_step=diverged_step, metrics=metrics, eval_info=eval_info,
        diagnostics=diagnostics,
        history=HISTORY if cfg.logger.name != "none" else None,
        extra={"setting": setting,
               "execution": {"members_in_job": n_members, "mode": "packed" if n_members > 1 else "per_run"}},
        config=cell_config(cfg, cell),
    )


def quiet() -> None:
    """Silence Lightning's and the environment's chatter that says nothing about the run."""
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # torch.compile on a CPU-only machine warns that no CUDA runtime exists: true, and irrelevant here.
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=".*(num_workers|does not have many workers|GPU available|TPU available).*")
    warnings.filterwarnings("ignore", message=".*The `srun` command is available.*")
    warnings.filterwarnings("ignore", message=".*isinstance\\(treespec, LeafSpec\\).*")


