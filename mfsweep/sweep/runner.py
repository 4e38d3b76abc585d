"""The per-cell lifecycle of one job, which `mfsweep-train` (mfsweep/cli/train.py) runs once its config is
valid: which cells to train (skip what is recorded, `sweep.rerun`; claim them against other jobs), training
them (resuming from the job's checkpoint), and writing what each leaves: history, samples and its record
(completed, diverged or failed; assembled by mfsweep/sweep/record.py), and closing its W&B run (the tracking
draws its samples plot).

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

import yaml
from omegaconf import DictConfig, OmegaConf

from mfsweep.config.members import packed_keys as config_packed_keys
from mfsweep.atomic import StorageError, write_bytes_atomic, write_csv_atomic, write_npz_atomic
from mfsweep.sweep.cells import Cell, context_overrides, member_cells, needs_training, override_key, setting_keys
from mfsweep.sweep.lock import claim
from mfsweep.sweep.record import HISTORY, SAMPLES, cell_metrics, cell_record, prepare_cell, write_record

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


def _flat(config: dict[str, Any], cell: Cell, task: MeanFlowModule, setting: dict[str, Any]) -> dict[str, Any]:
    """A cell's W&B config: flat keys to filter a dashboard by (the schedule and proxy by name; their keys are
    in `cfg`), then its whole resolved `config`."""
    return {"alpha": cell.alpha, "seed": cell.seed, "dataset": config["dataset"]["name"],
            "alpha_schedule": task.schedule.name, "tangent": task.proxy.name,
            "dim": config["dataset"]["dim"], "model": config["model"]["name"], "task": task.task_name,
            **dict(cell.setting), "setting": setting, "cfg": config}


def checkpoint_path(root: Path, context: str, cells: list[Cell]) -> Path:
    """One checkpoint per job, named by the cells it trains, so the same command finds it again."""
    key = hashlib.sha1(",".join(c.name for c in cells).encode()).hexdigest()[:12]
    return (Path(root) / context if context else Path(root)) / "checkpoints" / key / "last.ckpt"


def run(cfg: DictConfig, root: Path, context: str = "", overrides: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Train the cells of one job (a valid config) under `root/context` and return their records (resuming
    from the job's last checkpoint when one exists). `overrides` are the job's command-line overrides: the
    per-member keys they name are part of each cell's setting (and folder), the others of the job's context."""
    packed_keys = config_packed_keys(cfg.sweep)
    cells = member_cells(root, context, cfg, setting_keys(overrides, packed_keys))
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

    from mfsweep.tasks import build_task
    from mfsweep.tasks.allocator import keep_freed_memory
    from mfsweep.tasks.checkpointing import LastCheckpoint
    from mfsweep.tasks.progress import StepProgress
    from mfsweep.tasks.tracking import CellTracking

    keep_freed_memory()
    task = build_task(cfg, [c.alpha for c in todo], [c.seed for c in todo], [dict(c.setting) for c in todo])
    context_values = _context_values(overrides, packed_keys)
    settings = [cell_setting(c, context_values) for c in todo]
    configs = [cell_config(cfg, c) for c in todo]
    group = cfg.sweep.name or "-".join(Path(root).resolve().parts[-2:])
    tracking = CellTracking([c.dir for c in todo], [_flat(config, c, task, st) for config, c, st in zip(configs, todo, settings)],
                            OmegaConf.to_container(cfg.logger), group=group, job_type=task.task_name,
                            names=[c.name for c in todo])
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
    for c, config in zip(todo, configs) if rank_zero else []:
        write_bytes_atomic(c.dir / "config.yaml", OmegaConf.to_yaml(config).encode())
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
        for i, (c, st, config) in enumerate(zip(todo, settings, configs)):
            write_record(c.dir, cell_record(config, c, task, i, status="failed", wall_s=wall, n_members=len(todo),
                                            setting=st, error=error))
        tracking.finish([{"error": error}] * len(todo), [None] * len(todo), exit_code=1)
        raise
    wall = (time.perf_counter() - start) / len(todo)
    finished = [_finish_cell(config, c, task, i, st, res, wall, len(todo))
                for i, (c, st, res, config) in enumerate(zip(todo, settings, results, configs))]
    records, summaries, samples = zip(*finished)
    tracking.finish(summaries, samples)
    return list(records)


def _finish_cell(config: dict[str, Any], cell: Cell, task: MeanFlowModule, i: int, setting: dict[str, Any],
                 res: CellEval, wall: float, n_members: int) -> tuple[dict[str, Any], dict[str, Any], dict | None]:
    """Write one cell's history, samples and record; return the record, its W&B summary and the samples its
    W&B run plots."""
    from mfsweep.tasks.tracking import summary  # with Lightning, which `run` has imported

    diverged = task.diverged_step[i]
    if config["logger"]["name"] != "none":
        keys = sorted({k for row in task.history[i] for k in row} - {"step"})
        write_csv_atomic(cell.dir / HISTORY, task.history[i], ["step"] + keys)
    samples = res.arrays if diverged is None and res.arrays else None
    if samples:
        write_npz_atomic(cell.dir / SAMPLES, **samples)
    metrics = cell_metrics(task.history[i], res.metrics if diverged is None else None)
    diagnostics = task.diagnostics_summary(i)
    status = "completed" if diverged is None else "diverged"
    write_record(cell.dir, record := cell_record(config, cell, task, i, status=status, wall_s=wall, n_members=n_members,
                                                 setting=setting, metrics=metrics, diagnostics=diagnostics, result=res))
    sw1 = metrics.get("sw1")
    log.info("cell %s: %s%s  (%s)", cell.name, status,
             f" sw1={sw1:.4f} sw2={metrics['sw2']:.4f}" if sw1 is not None else (f" at step {diverged}" if diverged else ""),
             cell.dir)
    return record, summary(metrics, diagnostics), samples


def quiet() -> None:
    """Silence Lightning's and the environment's chatter that says nothing about the run."""
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # torch.compile on a CPU-only machine warns that no CUDA runtime exists: true, and irrelevant here.
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=".*(num_workers|does not have many workers|GPU available|TPU available).*")
    warnings.filterwarnings("ignore", message=".*The `srun` command is available.*")
    warnings.filterwarnings("ignore", message=".*isinstance\\(treespec, LeafSpec\\).*")


