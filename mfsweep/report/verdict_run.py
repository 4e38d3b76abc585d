"""The sweep-level W&B run of `mfsweep-report`: each setting's answer (the verdict table) and the paired plot,
in the sweep's W&B group beside its cells' runs, so the dashboard shows what the report shows. Only for sweeps
whose cells logged to W&B (`logger.name=wandb`, offline unless `logger.offline=false`); its folder is
`SWEEP_DIR/wandb/`."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mfsweep.report.aggregate import read_cell_config
from mfsweep.tasks.tracking import drop_earlier_parts, wandb_run_id

JOB_TYPE = "verdict"
COLUMNS = ["setting", "metric", "answer", "best alpha", "seeds per alpha", "rounds", "sentence"]


def sweep_logger(sweep_dir: Path) -> tuple[dict[str, Any], str] | None:
    """The W&B logger config and group of the sweep's cells (from their resolved config.yaml: the first cell
    found), or None when they did not log to W&B."""
    for path in sorted(Path(sweep_dir).rglob("config.yaml")):
        if ".hydra" in path.parts:
            continue
        cfg = read_cell_config(path)
        if cfg is None:
            continue
        logger = cfg.get("logger") or {}
        if logger.get("name") != "wandb":
            return None
        group = (cfg.get("sweep") or {}).get("name") or "-".join(Path(sweep_dir).resolve().parts[-2:])
        return logger, group
    return None


def log_verdict_run(report) -> Path | None:
    """Log `report`'s answers and paired plot as one W&B run (job type `verdict`, one stable id per sweep
    folder, so a later report replaces the earlier offline part); return its folder, None without W&B."""
    found = sweep_logger(report.sweep_dir)
    answers = [v.answer for v in report.verdicts if v.answer]
    if found is None or not answers:
        return None
    import wandb

    logger, group = found
    os.environ.setdefault("WANDB_SILENT", "true")
    mode = "offline" if logger.get("offline", True) else "online"
    run_id = wandb_run_id(report.sweep_dir)
    if mode == "offline":
        drop_earlier_parts(Path(report.sweep_dir), run_id)
    run = wandb.init(project=logger.get("project", "mfsweep"), entity=logger.get("entity"), group=group,
                     job_type=JOB_TYPE, tags=list(logger.get("tags") or []), name=f"{group}-verdict", id=run_id,
                     resume="allow", dir=str(report.sweep_dir), mode=mode, reinit="create_new",
                     settings=wandb.Settings(silent=True, console="off"))
    table = wandb.Table(columns=COLUMNS, data=[
        [a.setting, a.metric, a.answer, a.best_alpha, ", ".join(f"{k:g}: {n}" for k, n in sorted(a.seeds.items())),
         a.rounds, a.sentence()] for a in answers])
    logged: dict[str, Any] = {"verdict/table": table}
    for key in (k for k in report.figures if k.endswith("_paired") and k != "methods_paired"):
        logged[f"verdict/{key}"] = wandb.Image(report.figures[key])
    run.log(logged)
    for a in answers:
        run.summary[f"verdict/{a.setting}/answer"] = a.answer
        run.summary[f"verdict/{a.setting}/best_alpha"] = a.best_alpha
    run.finish()
    return Path(run.dir).parent
