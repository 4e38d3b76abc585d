"""The per-cell record `result.json` (docs/design.md, "The per-cell record"): a contract that reports,
notebooks and outside checks read. One folder per grid cell holds `result.json`, `samples.npz`
(`generated`, `reference`) and `history.csv`."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from mfsweep.sweep.atomic import write_json_atomic
from mfsweep.sweep.lock import release
from mfsweep.sweep.provenance import provenance

SCHEMA = 1
RECORD = "result.json"
SAMPLES = "samples.npz"
HISTORY = "history.csv"
STATUSES = ("completed", "failed", "diverged")
METRIC_KEYS = ("sw1", "sw2", "fid", "grad_var", "grad_var_total", "loss_mse", "loss_weighted")
DIAGNOSTIC_KEYS = ("alpha_star_scalar", "alpha_star_ub", "kappa", "sigma2", "bias2")
TOP_KEYS = (
    "schema", "status", "error", "diverged_step", "task", "dataset", "dim", "alpha", "seed", "tangent",
    "anchor_weight", "adaptive_p", "steps", "wall_s", "metrics", "eval", "diagnostics", "history",
)


def round_alpha(alpha: float) -> float:
    """Alphas are recorded rounded to 10 decimals, so 0.30000000000000004 and 0.3 are the same cell."""
    return round(float(alpha), 10)


def _finite_or_none(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def make_record(
    *,
    status: str,
    task: str,
    dataset: str,
    dim: int,
    alpha: float,
    seed: int,
    tangent: str,
    anchor_weight: float,
    adaptive_p: float,
    steps: int,
    wall_s: float,
    error: str | None = None,
    diverged_step: int | None = None,
    metrics: dict[str, Any] | None = None,
    eval_info: dict[str, Any] | None = None,
    diagnostics: dict[str, Any] | None = None,
    history: str | None = HISTORY,
    extra: dict[str, Any] | None = None,
    config: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A schema-1 record. Metrics and diagnostics not measured are null; non-finite values become null
    (a diverged cell says so in `status`, not with NaNs that JSON cannot hold). `config` (the cell's resolved
    config) gives `provenance.config_hash`."""
    if status not in STATUSES:
        raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
    metrics = {k: _finite_or_none((metrics or {}).get(k)) for k in METRIC_KEYS} | {
        k: _finite_or_none(v) for k, v in (metrics or {}).items() if k not in METRIC_KEYS
    }
    diagnostics = {k: _finite_or_none((diagnostics or {}).get(k)) for k in DIAGNOSTIC_KEYS} | {
        k: v for k, v in (diagnostics or {}).items() if k not in DIAGNOSTIC_KEYS
    }
    record = {
        "schema": SCHEMA, "status": status, "error": error, "diverged_step": diverged_step,
        "task": task, "dataset": dataset, "dim": int(dim), "alpha": round_alpha(alpha), "seed": int(seed),
        "tangent": tangent, "anchor_weight": float(anchor_weight), "adaptive_p": float(adaptive_p),
        "steps": int(steps), "wall_s": round(float(wall_s), 3), "metrics": metrics,
        "eval": eval_info or {}, "diagnostics": diagnostics, "history": history,
        "provenance": provenance(config),
    }
    if extra:
        record.update(extra)
    return record


def write_record(cell_dir: str | Path, record: dict[str, Any]) -> Path:
    """Write the cell's record; the cell is then done, so this process's lock on it is released."""
    check_record(record)
    path = write_json_atomic(Path(cell_dir) / RECORD, record)
    release(Path(cell_dir))
    return path


def read_record(cell_dir: str | Path) -> dict[str, Any] | None:
    """The cell's record, or None when it has none yet."""
    path = Path(cell_dir) / RECORD
    if not path.exists():
        return None
    record = json.loads(path.read_text())
    check_record(record, where=str(path))
    return record


def check_record(record: dict[str, Any], where: str = "record") -> None:
    """Raise ValueError unless `record` follows schema 1."""
    missing = [k for k in TOP_KEYS if k not in record]
    if missing:
        raise ValueError(f"{where}: missing keys {missing}")
    if record["schema"] != SCHEMA:
        raise ValueError(f"{where}: schema {record['schema']!r}, expected {SCHEMA}")
    if record["status"] not in STATUSES:
        raise ValueError(f"{where}: status {record['status']!r} not in {STATUSES}")
    if record["status"] == "diverged" and record["diverged_step"] is None:
        raise ValueError(f"{where}: a diverged record needs diverged_step")
    if record["status"] == "failed" and not record["error"]:
        raise ValueError(f"{where}: a failed record needs an error message")
    for k in METRIC_KEYS:
        if k not in record["metrics"]:
            raise ValueError(f"{where}: metrics.{k} missing")
