"""Per-cell tracking: one W&B run per grid cell (offline by default, its folder inside the cell folder),
fed during training from the module's per-member history, in both execution modes."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Sequence

import lightning as L


def wandb_run_id(cell_dir: Path) -> str:
    """A stable id per cell folder, so a requeued or resumed cell continues the same W&B run."""
    return hashlib.sha1(str(Path(cell_dir).resolve()).encode()).hexdigest()[:16]


class CellTracking(L.Callback):
    """Streams each member's history rows to its cell's W&B run; `finish` adds the summary and plot."""

    def __init__(self, cell_dirs: Sequence[Path], configs: Sequence[dict[str, Any]], logger_cfg: dict[str, Any], group: str, job_type: str):
        self.cell_dirs, self.configs = list(cell_dirs), list(configs)
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
        for cell_dir, config in zip(self.cell_dirs, self.configs):
            Path(cell_dir).mkdir(parents=True, exist_ok=True)
            self.runs.append(wandb.init(
                project=self.cfg.get("project", "mfsweep"), entity=self.cfg.get("entity"), group=self.group,
                job_type=self.job_type, tags=list(self.cfg.get("tags") or []), config=config,
                name=Path(cell_dir).name, id=wandb_run_id(cell_dir), resume="allow", dir=str(cell_dir), mode=mode,
                reinit="create_new", settings=wandb.Settings(silent=True, console="off"),
            ))

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        os.environ.setdefault("WANDB_SILENT", "true")
        self.start()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: Any, *_: Any) -> None:
        self.drain(pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: Any) -> None:
        self.drain(pl_module)  # the module's own batch-end hook runs after ours: its last rows wait here

    def drain(self, pl_module: Any) -> None:
        pending, pl_module.pending = pl_module.pending, []
        for step, rows in pending:
            for run, row in zip(self.runs, rows):
                run.log({k: v for k, v in row.items() if k != "step"}, step=step)

    def finish(self, summaries: Sequence[dict[str, Any]], figures: Sequence[Any], exit_code: int = 0) -> None:
        """Write each run's summary (`eval/...` keys) and sample plot, then close it."""
        if not self.runs:
            return
        import wandb

        for run, summary, fig in zip(self.runs, summaries, figures):
            for k, v in summary.items():
                if v is not None:
                    run.summary[k] = v
            if fig is not None:
                run.log({"eval/samples": wandb.Image(fig)})
            run.finish(exit_code=exit_code)
        self.runs = []
