"""Per-cell tracking: one W&B run per grid cell (offline by default, its folder inside the cell folder),
fed during training from the module's per-member history, in both execution modes."""
from __future__ import annotations

import hashlib
import logging
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

import lightning as L

log = logging.getLogger("mfsweep")


def wandb_run_id(cell_dir: Path) -> str:
    """A stable id per cell folder, so a requeued or resumed cell continues the same W&B run."""
    return hashlib.sha1(str(Path(cell_dir).resolve()).encode()).hexdigest()[:16]


def drop_earlier_parts(cell_dir: Path, run_id: str) -> None:
    """Offline, every start of a cell writes its own offline-run-*-<id> folder. A resumed cell's new part
    logs the whole history again (`replay`), config and summary included, so an interrupted earlier part
    (often empty: wandb's service dies with a preempted job before it flushes) holds nothing the new one
    lacks: remove it, leaving one part per cell for `wandb sync`."""
    for part in (cell_dir / "wandb").glob(f"offline-run-*-{run_id}"):
        shutil.rmtree(part, ignore_errors=True)


def summary(metrics: dict[str, Any], diagnostics: dict[str, Any] | None) -> dict[str, Any]:
    """A cell's W&B summary. Every cell carries the same keys (null where not measured, e.g. FID on 2-D data),
    so one W&B dashboard serves every task."""
    out = {f"eval/{k}": metrics.get(k) for k in ("sw1", "sw2", "fid")}
    out |= {f"diag/{k}": metrics.get(k) for k in ("grad_var", "grad_var_total")}
    return out | {f"diag/{k}": v for k, v in (diagnostics or {}).items() if isinstance(v, float)}


class CellTracking(L.Callback):
    """Streams each member's history rows to its cell's W&B run; `finish` adds the summary and samples plot."""

    def __init__(self, cell_dirs: Sequence[Path], configs: Sequence[dict[str, Any]], logger_cfg: dict[str, Any], group: str,
                 job_type: str, names: Sequence[str] | None = None):
        self.cell_dirs, self.configs = list(cell_dirs), list(configs)
        # The cells' names (setting/alpha, seed), unique within the group: the samples plots' titles, and with
        # spaces for slashes the runs' names.
        self.names = list(names) if names is not None else [Path(d).name for d in self.cell_dirs]
        self.cfg, self.group, self.job_type = dict(logger_cfg), group, job_type
        self.runs: list[Any] = []

    @property
    def enabled(self) -> bool:
        return self.cfg.get("name") == "wandb"

    def start(self) -> None:
        if not self.enabled or self.runs:
            return
        import wandb

        mode = "offline" if self.cfg.get("offline", True) else "online"
        for cell_dir, config, name in zip(self.cell_dirs, self.configs, self.names):
            Path(cell_dir).mkdir(parents=True, exist_ok=True)
            run_id = wandb_run_id(cell_dir)
            if mode == "offline":
                drop_earlier_parts(Path(cell_dir), run_id)
            self.runs.append(wandb.init(
                project=self.cfg.get("project", "mfsweep"), entity=self.cfg.get("entity"), group=self.group,
                job_type=self.job_type, tags=list(self.cfg.get("tags") or []), config=config | {"wandb_run_id": run_id},
                name=name.replace("/", " "), id=run_id, resume="allow", dir=str(cell_dir), mode=mode,
                reinit="create_new", settings=wandb.Settings(silent=True, console="off"),
            ))

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        os.environ.setdefault("WANDB_SILENT", "true")
        if trainer.is_global_zero:  # one W&B run per cell, not one per DDP process
            self.start()
            self.replay(pl_module)

    def replay(self, pl_module: Any) -> None:
        """Log the history a resumed cell restored from its checkpoint again, from the run's current step on
        (0 offline; the server's next step online). A preempted job's offline run folder can hold none of it:
        wandb's service buffers and dies with the job before flushing. Once synced, W&B ignores rows for steps
        it already has, so nothing counts twice."""
        with self._guarded("replaying the restored history"):
            for run, rows in zip(self.runs, pl_module.history):
                for row in rows:
                    if row["step"] >= run.step:
                        run.log({k: v for k, v in row.items() if k != "step"}, step=row["step"])

    @contextmanager
    def _guarded(self, what: str) -> Iterator[None]:
        """W&B never fails a cell. On a preemption SLURM stops wandb's service with the rest of the job while
        this process trains on to the next step boundary (and its checkpoint), so logging can break. The runs
        are then dropped; the record and history.csv are unaffected, and a resumed cell replays its history."""
        try:
            yield
        except Exception as exc:
            log.warning("W&B failed while %s (%s: %s); no more W&B logging in this process", what,
                        type(exc).__name__, exc)
            self.runs = []

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: Any, *_: Any) -> None:
        self.drain(pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: Any) -> None:
        self.drain(pl_module)  # the module's own batch-end hook runs after ours: its last rows wait here

    def drain(self, pl_module: Any) -> None:
        pending, pl_module.pending = pl_module.pending, []
        with self._guarded("logging the history"):
            for step, rows in pending:
                for run, row in zip(self.runs, rows):
                    run.log({k: v for k, v in row.items() if k != "step"}, step=step)

    def finish(self, summaries: Sequence[dict[str, Any]], samples: Sequence[dict[str, Any] | None],
               exit_code: int = 0) -> None:
        """Write each run's summary (`summary`) and the plot of its samples (`samples.npz`'s arrays, or None),
        then close it. A failure (`exit_code` != 0) is logged even when it came before training started its runs, so the
        dashboard shows every cell: status failed, the error (a summary key) in the summary."""
        if exit_code:
            with self._guarded("starting the runs of failed cells"):
                self.start()
        if not self.runs:
            return
        import wandb

        from mfsweep.tasks.sample_figure import sample_figure  # matplotlib: only where a run shows a plot

        with self._guarded("writing the summary"):
            for run, name, values, arrays in zip(self.runs, self.names, summaries, samples):
                fig = sample_figure(arrays, name) if arrays else None
                # Commit the last step's row (with the plot) first: committed later, its values (e.g. the last
                # diag/grad_var) would overwrite the summary's.
                run.log({"eval/samples": wandb.Image(fig)} if fig is not None else {}, commit=True)
                for k, v in values.items():
                    run.summary[k] = v
                run.finish(exit_code=exit_code)
        self.runs = []
        import matplotlib.pyplot as plt

        plt.close("all")  # wandb.Image hands the figures to pyplot

    def interrupted(self) -> None:
        """After SIGTERM (a preemption, `scontrol requeue`, `scancel`): leave the runs open for the resumed cell
        to continue, and tear W&B's service connection down now. SLURM signals the whole job step, wandb's
        service included, so the connection is usually lost; wandb's own exit hook would then print a
        `ConnectionResetError` traceback that reads like a crash. Here a lost connection is expected and said
        in one line."""
        if not self.enabled:
            return
        import wandb

        self.runs = []
        try:
            wandb.teardown(exit_code=128 + 15)
        except Exception as exc:  # the service died with the job step: nothing was lost that replay won't restore
            log.info("W&B service gone after SIGTERM (%s); the resumed cell replays its history", type(exc).__name__)
