"""The per-cell record `result.json` (docs/design.md, "The per-cell record"): a contract that reports,
notebooks and outside checks read. One folder per grid cell holds `result.json`, `samples.npz`
(`generated`, `reference`) and `history.csv`. A trained cell's record is assembled here (`cell_record`) from
its config, its member of the trained task and its evaluation; the runner only writes it."""
from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from mfsweep.atomic import remove_temporaries, set_aside, write_json_atomic
from mfsweep.sweep.lock import release
from mfsweep.sweep.provenance import provenance

SCHEMA = 2  # 2: `alpha_schedule`, `alpha_trajectory` and `tangent` as a spec; readers accept 1 (READABLE)
READABLE = (1, 2)
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
SCHEMA_2_KEYS = ("alpha_schedule", "alpha_trajectory")
CONSTANT = "constant"
UNREADABLE = "unreadable record"  # how status and report name a cell whose record cannot be read
log = logging.getLogger("mfsweep")


class UnreadableRecord(ValueError):
    """A `result.json` that is not a record of its cell (truncated, garbage, another schema, another cell's):
    the cell counts as not completed, and its next training moves the file aside (`prepare_cell`)."""

    def __init__(self, path: Path, why: str):
        super().__init__(f"{path}: {why}")
        self.path, self.why = Path(path), why
# Record keys that, with the dataset, tell settings of one sweep apart (alpha and seed are the grid): written by
# `setting_fields`, for a cell's record and for a planned cell's entry (plan.json) alike, and grouped by in the
# report (report/aggregate.py). The schedule and the proxy are there as their specs.
SETTING_KEYS = ("task", "dataset", "dim", "alpha_schedule", "tangent", "anchor_weight", "adaptive_p")
# Training losses and gradient variances as tail means of the history: (metric, history column, tail fraction).
TAIL_MEANS = (("loss_mse", "train/loss_mse", 0.1), ("loss_weighted", "train/loss_weighted", 0.1),
              ("grad_var", "diag/grad_var", 0.5), ("grad_var_total", "diag/grad_var_total", 0.5))

if TYPE_CHECKING:
    from mfsweep.sweep.cells import Cell
    from mfsweep.tasks.meanflow import CellEval, MeanFlowModule


def round_alpha(alpha: float | None) -> float | None:
    """Alphas are recorded rounded to 10 decimals, so 0.30000000000000004 and 0.3 are the same cell."""
    return None if alpha is None else round(float(alpha), 10)


def alpha_schedule(record: dict[str, Any]) -> dict[str, Any]:
    """The record's alpha schedule spec; a schema-1 record's alpha was constant."""
    return record.get("alpha_schedule") or {"name": CONSTANT, "value": record["alpha"]}


def tangent_spec(record: dict[str, Any]) -> dict[str, Any]:
    """The record's proxy spec; a schema-1 record holds only its name."""
    tangent = record["tangent"]
    return tangent if isinstance(tangent, dict) else {"name": tangent}


def grid_alpha(record: dict[str, Any]) -> float | None:
    """The alpha that places a cell in its setting's grid: its constant alpha, or None under another schedule
    (whose cells differ by seed only; the top-level `alpha` is then the trajectory's mean)."""
    return record["alpha"] if alpha_schedule(record)["name"] == CONSTANT else None


def spec_label(spec: dict[str, Any], skip: tuple[str, ...] = ()) -> str:
    """A spec as one short string for tables and labels: `cosine(start=0, end=1)`, `ema(ema_decay=0.99)`."""
    keys = ", ".join(f"{k}={_short(v)}" for k, v in spec.items() if k != "name" and k not in skip)
    return f"{spec['name']}({keys})" if keys else str(spec["name"])


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}={_short(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_short(v) for v in value) + "]"
    return str(value)


def _finite_or_none(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def setting_fields(get: Callable[[str], Any], *, task: str, dim: int, alpha_schedule: dict[str, Any],
                   tangent: dict[str, Any]) -> dict[str, Any]:
    """The record's `SETTING_KEYS`: the task, the dimension and the components' specs as given, the rest read by
    `get(config key)` from the cell's own config."""
    return {"task": task, "dataset": get("dataset.name"), "dim": dim, "alpha_schedule": alpha_schedule,
            "tangent": tangent, "anchor_weight": get("loss.anchor_weight"), "adaptive_p": get("loss.adaptive_p")}


def tail_mean(rows: list[dict[str, float]], key: str, fraction: float) -> float | None:
    """Mean of `key` over the last `fraction` of the rows that hold it (at least one row)."""
    values = [r[key] for r in rows if key in r]
    if not values:
        return None
    return float(np.mean(values[-max(1, int(round(len(values) * fraction))):]))


def cell_metrics(history: list[dict[str, float]], evaluated: dict[str, float] | None) -> dict[str, Any]:
    """A cell's metrics: its evaluation's (none for a diverged cell) and the `TAIL_MEANS` of its history."""
    return dict(evaluated or {}) | {name: tail_mean(history, key, f) for name, key, f in TAIL_MEANS}


def cell_record(config: dict[str, Any], cell: Cell, task: MeanFlowModule, i: int, *, status: str, wall_s: float,
                n_members: int, setting: dict[str, Any], error: str | None = None,
                metrics: dict[str, Any] | None = None, diagnostics: dict[str, Any] | None = None,
                result: CellEval | None = None) -> dict[str, Any]:
    """The record of member `i` of a trained (or failed) `task`, the cell `cell` with its resolved `config`:
    its `metrics` (`cell_metrics`), `diagnostics` (the task's summary) and evaluation `result` when it trained
    to the end (completed or diverged); `setting` as the report tells it apart (the runner's)."""
    diverged = task.diverged_step[i] if status == "diverged" else None
    fields = setting_fields(lambda key: _select(config, key), task=task.task_name, dim=task.data_dim, alpha_schedule=task.schedule.spec(i),
                            tangent=task.proxy.spec(i))
    return make_record(
        status=status, alpha=cell.alpha, seed=cell.seed, alpha_trajectory=task.schedule.trajectory(i), **fields,
        steps=diverged if diverged is not None else task.global_step, wall_s=wall_s, error=error,
        diverged_step=diverged, metrics=metrics,
        eval_info=result.info if result is not None and status == "completed" else {},
        diagnostics=diagnostics,
        history=HISTORY if config["logger"]["name"] != "none" else None,
        extra={"setting": setting,
               "execution": {"members_in_job": n_members, "mode": "packed" if n_members > 1 else "per_run"}},
        config=config,
    )


def _select(config: dict[str, Any], key: str) -> Any:
    """`config`'s value at dotted `key` (the cell's own values are already in its config)."""
    for part in key.split("."):
        config = config[part]
    return config


def make_record(
    *,
    status: str,
    task: str,
    dataset: str,
    dim: int,
    alpha: float | None,
    seed: int,
    tangent: dict[str, Any],
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
    alpha_schedule: dict[str, Any] | None = None,
    alpha_trajectory: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A schema-2 record. `alpha` is the constant alpha, or (None under another schedule) the mean of
    `alpha_trajectory` (`{start, end, mean}` over the steps trained); `alpha_schedule` and `tangent` are the
    components' specs (`{"name": "constant", "value": 0.3}`; by default a constant `alpha`). Metrics and diagnostics not measured are null;
    non-finite values become null (a diverged cell says so in `status`, not with NaNs that JSON cannot hold).
    `config` (the cell's resolved config) gives `provenance.config_hash`."""
    if status not in STATUSES:
        raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
    if alpha_schedule is None:
        alpha_schedule = {"name": CONSTANT, "value": round_alpha(alpha)}
        alpha_trajectory = {"start": round_alpha(alpha), "end": round_alpha(alpha), "mean": round_alpha(alpha)}
    metrics = {k: _finite_or_none((metrics or {}).get(k)) for k in METRIC_KEYS} | {
        k: _finite_or_none(v) for k, v in (metrics or {}).items() if k not in METRIC_KEYS
    }
    diagnostics = {k: _finite_or_none((diagnostics or {}).get(k)) for k in DIAGNOSTIC_KEYS} | {
        k: v for k, v in (diagnostics or {}).items() if k not in DIAGNOSTIC_KEYS
    }
    record = {
        "schema": SCHEMA, "status": status, "error": error, "diverged_step": diverged_step,
        "task": task, "dataset": dataset, "dim": int(dim),
        "alpha": round_alpha(alpha if alpha is not None else alpha_trajectory["mean"]), "seed": int(seed),
        "alpha_schedule": alpha_schedule, "alpha_trajectory": alpha_trajectory, "tangent": tangent, "anchor_weight": float(anchor_weight), "adaptive_p": float(adaptive_p),
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
    """The cell's record, or None when it has none yet; UnreadableRecord when its file is not a valid record
    of this cell."""
    path = Path(cell_dir) / RECORD
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        record = json.loads(text)
        if not isinstance(record, dict):
            raise ValueError(f"a JSON {type(record).__name__}, not a record")
        check_record(record, where="record")
        _check_cell(record, path.parent)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError included
        raise UnreadableRecord(path, str(exc).removeprefix("record: ")) from None
    return record


def _check_cell(record: dict[str, Any], cell_dir: Path) -> None:
    """A record in a cell folder (`alpha=A,seed=S` or `seed=S`) must be that cell's: a file copied from
    another cell would otherwise be reported as this one."""
    from mfsweep.sweep.cells import cell_name

    if cell_dir.name.startswith(("alpha=", "seed=")):
        own = cell_name(grid_alpha(record), record["seed"])
        if own != cell_dir.name:
            raise ValueError(f"the record of another cell ({own})")


def prepare_cell(cell_dir: str | Path) -> None:
    """Before a cell trains (its lock held): move an unreadable record aside, with one warning line, and
    remove the temporary files that a writer killed mid-write left in its folder."""
    cell_dir = Path(cell_dir)
    remove_temporaries(cell_dir, (RECORD, SAMPLES, HISTORY, "config.yaml"))
    try:
        read_record(cell_dir)
    except UnreadableRecord as exc:
        grave = set_aside(exc.path)
        log.warning("%s: %s; moved aside to %s, training the cell again", exc.path, exc.why, grave.name)


def check_record(record: dict[str, Any], where: str = "record") -> None:
    """Raise ValueError unless `record` follows schema 2 (or 1, written before the specs)."""
    if record.get("schema") not in READABLE:
        raise ValueError(f"{where}: schema {record.get('schema')!r}, expected one of {READABLE}")
    missing = [k for k in TOP_KEYS + (SCHEMA_2_KEYS if record["schema"] >= 2 else ()) if k not in record]
    if missing:
        raise ValueError(f"{where}: missing keys {missing}")
    if record["status"] not in STATUSES:
        raise ValueError(f"{where}: status {record['status']!r} not in {STATUSES}")
    if record["status"] == "diverged" and record["diverged_step"] is None:
        raise ValueError(f"{where}: a diverged record needs diverged_step")
    if record["status"] == "failed" and not record["error"]:
        raise ValueError(f"{where}: a failed record needs an error message")
    for k in METRIC_KEYS:
        if k not in record["metrics"]:
            raise ValueError(f"{where}: metrics.{k} missing")
