"""Collect a sweep folder's per-cell records and summarise them per setting and alpha (mean +- SEM over
seeds, docs/method.md 5). Failed, diverged and missing cells are counted, never silently dropped: with a plan
(plan.json, written at launch) every planned cell is listed, a missing one with why it is missing."""
from __future__ import annotations

import csv
import json
import math
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import yaml

from mfsweep.sweep.cells import cell_name
from mfsweep.sweep.plan import read_plan
from mfsweep.report.evaluation import paired_eval_se
from mfsweep.sweep.record import (CONSTANT, DIAGNOSTIC_KEYS, HISTORY, RECORD, SETTING_KEYS, UnreadableRecord,
                                  alpha_schedule, grid_alpha, read_record, spec_label, tangent_spec)
from mfsweep.sweep.states import planned_cells

# A setting is the record's SETTING_KEYS (mfsweep/sweep/record.py), with the schedule and the proxy as their
# specs' labels (a schedule other than constant, `cosine(start=0, end=1, ...)`, or another proxy is a setting of
# its own, a row beside the constant-alpha grid), plus the record's `setting` dict (its swept per-member keys
# besides alpha and seed, and its job's context overrides, e.g. `trainer.lr`, `time.ratio`, `model.width`);
# records written before that dict existed have none.
NOT_COMPLETED = ("failed", "diverged", "missing")
# What reading a cell's history.csv, samples.npz or config.yaml raises when the file is damaged.
UNREADABLE_FILE = (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, yaml.YAMLError, csv.Error)
_warned: set[Path] = set()


def unreadable_file(path: Path, exc: BaseException) -> None:
    """Say once, in one line, that a completed cell's file is unreadable and the report goes on without it."""
    if path not in _warned:
        _warned.add(path)
        print(f"mfsweep-report: {path} is unreadable ({type(exc).__name__}: {str(exc)[:120]}); reported without it. "
              "To train the cell again, move its result.json aside and run the sweep's command again.", file=sys.stderr)


def read_cell_config(path: Path) -> dict[str, Any] | None:
    """A cell's resolved config.yaml; None (said once, in one line) when it is damaged."""
    try:
        config = yaml.safe_load(path.read_bytes().decode())
        if not isinstance(config, dict):
            raise ValueError(f"a YAML {type(config).__name__}, not a config")
    except UNREADABLE_FILE as exc:
        unreadable_file(path, exc)
        return None
    return config


@dataclass
class CellRecord:
    """A cell as the report reads it: its folder and its record (not mfsweep.sweep.cells.Cell, a cell to train)."""

    path: Path
    record: dict[str, Any]  # a planned cell without a record: status "missing", its `reason`, no metrics
    setting: dict[str, Any] = field(default_factory=dict)  # its setting's keys from the plan (overrides)


def collect(sweep_dir: str | Path) -> list[CellRecord]:
    """Every `result.json` below `sweep_dir`, and every cell of its plan that has none (as a `missing` record
    saying why: an unreadable record is missing as `unreadable record`). An unreadable record that no plan
    lists raises ValueError naming the file (it cannot be placed in a setting)."""
    cells, unreadable = {}, []
    for path in sorted(Path(sweep_dir).rglob(RECORD)):
        try:
            cells[path.parent] = CellRecord(path.parent, read_record(path.parent))
        except UnreadableRecord as exc:
            unreadable.append(exc)
        except OSError as exc:
            raise ValueError(f"{path}: not readable ({exc})") from exc
    plan = read_plan(Path(sweep_dir))
    for p in planned_cells(Path(sweep_dir), plan) if plan else []:
        if p.dir in cells:
            cells[p.dir].setting = p.entry["setting"]
        else:
            e = p.entry
            missing = {"status": "missing", "reason": p.reason, "error": None, "alpha": e["alpha"],
                       "seed": e["seed"], "metrics": {}, "eval": {}, "diagnostics": {}, "history": None}
            cells[p.dir] = CellRecord(p.dir, e["record_keys"] | missing, e["setting"])
    for exc in unreadable:
        if exc.path.parent not in cells:
            raise ValueError(f"{exc.path}: not a valid record ({exc.why}); move it aside, or run the sweep's "
                             "command again to retrain the cell")
    return sorted(cells.values(), key=lambda c: str(c.path))


def mean_sem(values: Iterable[float]) -> tuple[float | None, float | None]:
    """Mean and standard error of the mean (sample std / sqrt(n)); SEM is None for n < 2."""
    v = [float(x) for x in values if x is not None]
    if not v:
        return None, None
    m = sum(v) / len(v)
    if len(v) < 2:
        return m, None
    return m, math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1) / len(v))


@dataclass
class Row:
    """One (setting, alpha) of a sweep, over its seeds. Under a schedule other than constant the row is the
    setting's one row, and `alpha` the mean over its cells of their trajectories' mean alpha (NaN when none has
    trained); `grid_alpha` is then None."""

    setting: dict[str, Any]
    alpha: float
    seeds: list[int] = field(default_factory=list)
    status: dict[int, str] = field(default_factory=dict)  # seed -> completed | failed | diverged | missing
    stats: dict[str, tuple[float | None, float | None]] = field(default_factory=dict)
    # seed -> its cell: recorded, or planned and missing (record["reason"] says why); absent when unplanned
    cells: dict[int, CellRecord] = field(default_factory=dict)
    grid_alpha: float | None = None

    def count(self, status: str) -> int:
        return sum(1 for s in self.status.values() if s == status)

    @property
    def complete(self) -> bool:
        """Every seed of the grid completed."""
        return self.count("completed") == len(self.seeds)

    def completed(self) -> list[CellRecord]:
        return [self.cells[s] for s in self.seeds if self.status[s] == "completed"]

    def stat(self, metric: str, section: str = "metrics") -> dict[str, Any]:
        """`metric` (from `record[section]`) over the completed seeds, with the counts of the others: a
        plain dict for tables and notebooks."""
        values = [c.record[section].get(metric) for c in self.completed()]
        values = [v for v in values if v is not None]
        mean, sem = mean_sem(values)
        return {"alpha": self.alpha, "mean": mean, "sem": sem, "n": len(values), "seeds": len(self.seeds),
                "values": values} | {s: self.count(s) for s in NOT_COMPLETED}


# Command-line keys whose value a record holds under its own name: shown and compared once, as the record's.
MIRRORED = {"dataset.dim": "dim", "loss.adaptive_p": "adaptive_p", "loss.anchor_weight": "anchor_weight"}


def setting_dict(record: dict[str, Any]) -> dict[str, Any]:
    """The record's setting: `SETTING_KEYS` (the schedule as `constant` or its spec's label, the proxy as its
    spec's label), then its own `setting` keys (sorted)."""
    own = record.get("setting") or {}
    schedule = alpha_schedule(record)
    labels = {"alpha_schedule": CONSTANT if schedule["name"] == CONSTANT else spec_label(schedule),
              "tangent": spec_label(tangent_spec(record))}
    return {k: labels.get(k, record.get(k)) for k in SETTING_KEYS} | {k: own[k] for k in sorted(own)
                                                                      if k not in SETTING_KEYS and k not in MIRRORED}


def setting_label(setting: dict[str, Any], varying: list[str]) -> str:
    """The dataset, plus whichever setting keys vary across the sweep."""
    extra = [f"{k}={setting.get(k)}" for k in varying if k != "dataset"]
    return " ".join([str(setting["dataset"])] + extra)


def _setting(group: list[CellRecord]) -> dict[str, Any]:
    """A setting's keys: the records' (a recorded cell's, else the plan's guess), then the plan's overrides."""
    recorded = [c for c in group if c.record["status"] != "missing"] or group
    keys = setting_dict(recorded[0].record)
    return keys | {k: v for c in group[:1] for k, v in c.setting.items() if k not in keys and k not in MIRRORED}


def alpha_rows(cells: list[CellRecord], metrics: tuple[str, ...] = ("sw1", "sw2", "fid", "grad_var"),
               raced: bool = False) -> list[Row]:
    """Rows per (setting, alpha). A setting is the cells of one folder (cells.context_name: every override
    but alpha and seed), so sweeps over keys the record does not hold (trainer.betas) still separate. The
    expected grid of a setting is every alpha x every seed seen or planned in it; cells of that grid without
    a record or plan entry are `missing`. In a race (`raced`: sweep.until=resolved) an alpha's seeds are only
    its own: a dropped alpha got fewer seeds by design, none of them missing."""
    by_folder: dict[Path, list[CellRecord]] = {}
    for c in cells:
        by_folder.setdefault(c.path.parent, []).append(c)
    settings = {folder: _setting(group) for folder, group in by_folder.items()}
    seen: dict[str, list[Path]] = {}
    for folder, keys in settings.items():
        seen.setdefault(json.dumps(keys, sort_keys=True, default=str), []).append(folder)
    for folders in seen.values():
        if len(folders) > 1:  # nothing in records or plan tells these settings apart: their folders do
            for folder in folders:
                settings[folder]["folder"] = folder.name
    rows = []
    for folder, group in sorted(by_folder.items(), key=lambda kv: json.dumps(settings[kv[0]], sort_keys=True,
                                                                             default=str)):
        alphas = sorted({grid_alpha(c.record) for c in group}, key=lambda a: (a is None, a or 0.0))
        seeds = sorted({c.record["seed"] for c in group})
        index = {(grid_alpha(c.record), c.record["seed"]): c for c in group}
        for a in alphas:
            means = [c.record["alpha"] for c in group if grid_alpha(c.record) == a and c.record["alpha"] is not None]
            shown = a if a is not None else (float(np.mean(means)) if means else math.nan)
            own = sorted({c.record["seed"] for c in group if grid_alpha(c.record) == a}) if raced else seeds
            row = Row(dict(settings[folder]), shown, own, grid_alpha=a)
            for s in own:
                cell = index.get((a, s))
                row.status[s] = cell.record["status"] if cell else "missing"
                if cell:
                    row.cells[s] = cell
            for m in metrics:
                row.stats[m] = mean_sem(c.record["metrics"].get(m) for c in row.completed())
            rows.append(row)
    return rows


def varying_keys(rows: list[Row]) -> list[str]:
    """Setting keys whose value differs across the rows (a key some rows lack counts as differing)."""
    keys = list(dict.fromkeys(k for r in rows for k in r.setting))
    return [k for k in keys if len({json.dumps(r.setting.get(k), sort_keys=True, default=str) for r in rows}) > 1]


@dataclass
class Setting:
    """One setting of a sweep (a dataset, with its task, tangent and loss keys) and its alpha rows."""

    label: str
    keys: dict[str, Any]
    rows: list[Row]

    @property
    def alphas(self) -> list[float]:
        return [r.alpha for r in self.rows]

    @property
    def seeds(self) -> list[int]:
        return self.rows[0].seeds

    def row(self, alpha: float) -> Row | None:
        """The row of grid alpha `alpha` (none for a schedule's row, which has no grid alpha)."""
        return next((r for r in self.rows if r.grid_alpha == alpha), None)

    def cells(self) -> list[CellRecord]:
        return [c for r in self.rows for c in r.cells.values()]

    def steps(self) -> list[int]:
        """Training steps of the completed cells (diverged ones record where they stopped)."""
        return sorted({c.record["steps"] for r in self.rows for c in r.completed()})


# Setting keys whose values are component specs (`cosine(start=0, end=1, ...)`): a label shows their names
# when the names alone tell the settings apart; and the command line's group choice `alpha=cosine`, which
# the schedule's spec already names.
SPEC_KEYS, CHOICE_KEYS = ("alpha_schedule", "tangent"), ("alpha",)


def _short_label(setting: dict[str, Any], varying: list[str]) -> str:
    """Specs by name, and no key the setting does not set (`alpha.estimate=None` on a constant-alpha grid)."""
    short = {k: str(v).split("(")[0] if k in SPEC_KEYS else v for k, v in setting.items()}
    return setting_label(short, [k for k in varying if k not in CHOICE_KEYS and short.get(k) is not None])


def group_settings(rows: list[Row]) -> list[Setting]:
    """`alpha_rows`'s rows grouped per setting, in its order; labels name what varies across the sweep (the
    schedule and proxy by name, or in full where two settings share a name)."""
    varying = varying_keys(rows)
    out: list[Setting] = []
    for r in rows:
        if not out or out[-1].keys != r.setting:
            out.append(Setting(setting_label(r.setting, varying), r.setting, []))
        out[-1].rows.append(r)
    short = [_short_label(s.keys, varying) for s in out]
    if len(set(short)) == len(out):
        for s, label in zip(out, short):
            s.label = label
    return out


def best_alpha(setting: Setting, metric: str = "sw1") -> float | None:
    """The alpha with the lowest mean `metric` among those whose every seed completed (a partial alpha's
    mean is over fewer seeds, and a failure is no evidence of quality, so it is not a candidate); exact ties
    go to the smaller alpha, the one closer to vanilla MeanFlow. None when no alpha qualifies."""
    candidates = [(r.stats.get(metric, (None,))[0], r.alpha) for r in setting.rows if r.complete]
    candidates = [c for c in candidates if c[0] is not None]
    return min(candidates)[1] if candidates else None


def paired_difference(row: Row, base: Row, metric: str) -> dict[str, Any]:
    """Mean ± SEM over seeds of `metric` at `row` minus at `base`, on the seeds completed in both. Cells of
    one seed share initial weights and every random draw across alphas (README), so the per-seed difference
    removes the seed-to-seed spread that dominates the unpaired SEMs."""
    diffs = [row.cells[s].record["metrics"].get(metric) - base.cells[s].record["metrics"][metric]
             for s in row.seeds if row.status[s] == "completed" and base.status.get(s) == "completed"
             and row.cells[s].record["metrics"].get(metric) is not None
             and base.cells[s].record["metrics"].get(metric) is not None]
    mean, sem = mean_sem(diffs)
    pairs = [(row.cells[s].record, base.cells[s].record) for s in row.seeds if row.status[s] == "completed"
             and base.status.get(s) == "completed" and row.cells[s].record["metrics"].get(metric) is not None
             and base.cells[s].record["metrics"].get(metric) is not None]
    return {"mean": mean, "sem": sem, "n": len(diffs), "eval_se": paired_eval_se(pairs, metric)}


def expected_dir(setting: Setting, alpha: float | None, seed: int) -> Path | None:
    """Where the cell's folder is or would be (`alpha`: the row's `grid_alpha`): beside the setting's other
    cells (see `cells.plan_cells`)."""
    parents = {c.path.parent for c in setting.cells()}
    return parents.pop() / cell_name(alpha, seed) if len(parents) == 1 else None


def read_history(cell: CellRecord) -> dict[str, np.ndarray]:
    """The cell's history.csv as columns (empty cells are NaN); {} when it has none."""
    path = cell.path / (cell.record.get("history") or HISTORY)
    if not cell.record.get("history") or not path.exists():
        return {}
    try:
        text = path.read_bytes().decode()
        if not text.endswith("\n"):  # a written history always has at least its header line
            raise ValueError("empty" if not text else "its last line is cut off")
        rows = list(csv.DictReader(text.splitlines()))
        if any(None in r or None in r.values() for r in rows):
            raise ValueError("a row with too many or too few fields")
        return {k: np.array([float(r[k]) if r[k] != "" else np.nan for r in rows]) for k in rows[0]} if rows else {}
    except UNREADABLE_FILE as exc:
        unreadable_file(path, exc)
        return {}


def mean_history(histories: list[dict[str, np.ndarray]], key: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(steps, mean of `key` over the histories) on the steps where every history logged `key`."""
    series = []
    for h in histories:
        if key in h and "step" in h:
            ok = np.isfinite(h[key])
            series.append(dict(zip(h["step"][ok].tolist(), h[key][ok].tolist())))
    if not series:
        return None
    steps = sorted(set.intersection(*(set(s) for s in series)))
    if not steps:
        return None
    return np.array(steps), np.array([np.mean([s[t] for s in series]) for t in steps])


def loss_settings(setting: Setting) -> tuple[dict[str, Any], dict[str, dict[float, list[Any]]]]:
    """The `loss` section of the cells' resolved config.yaml: (keys with one value across the setting's
    alphas, {key: {alpha: values}} for keys that differ). Falls back to the records' anchor_weight and
    adaptive_p (which are setting keys, so fixed by construction) when no cell has a config.yaml."""
    per_alpha: dict[str, dict[float, list[Any]]] = {}
    for cell in setting.cells():
        path = cell.path / "config.yaml"
        if not path.exists():
            continue
        config = read_cell_config(path)
        if config is None:
            continue
        loss = config.get("loss") or {}
        for k, v in loss.items():
            values = per_alpha.setdefault(k, {}).setdefault(cell.record["alpha"], [])
            if v not in values:
                values.append(v)
    if not per_alpha:
        return {k: setting.keys[k] for k in ("anchor_weight", "adaptive_p")}, {}
    fixed, varying = {}, {}
    for k, by_alpha in sorted(per_alpha.items()):
        distinct = {json.dumps(v) for vs in by_alpha.values() for v in vs}
        if len(distinct) == 1:
            fixed[k] = next(iter(by_alpha.values()))[0]
        else:
            varying[k] = dict(sorted(by_alpha.items()))
    return fixed, varying


def diagnostic_keys(cells: list[CellRecord]) -> list[str]:
    """Diagnostics with a number in some record: the schema's first, then any others, sorted."""
    present = {k for c in cells for k, v in (c.record.get("diagnostics") or {}).items()
               if isinstance(v, (int, float)) and not isinstance(v, bool)}
    return [k for k in DIAGNOSTIC_KEYS if k in present] + sorted(present - set(DIAGNOSTIC_KEYS))


def add_floor_excess(cells: list[CellRecord]) -> None:
    """Give each record with a noise floor (`metrics.sw1_floor`, `sw2_floor`: SW between two reference draws)
    its excess over it, `metrics.sw1_excess` / `sw2_excess`, in memory, so the excess is summarised like any
    metric. Records without a floor (older schema) are left as they are."""
    for c in cells:
        m = c.record["metrics"]
        for k in ("sw1", "sw2"):
            if m.get(k) is not None and m.get(f"{k}_floor") is not None:
                m[f"{k}_excess"] = m[k] - m[f"{k}_floor"]


def mean_floor(setting: Setting, metric: str = "sw1") -> float | None:
    """The mean of `metric`'s floor over the setting's completed cells (None when no record has one)."""
    values = [v for r in setting.rows for c in r.completed()
              if (v := c.record["metrics"].get(f"{metric}_floor")) is not None]
    return float(np.mean(values)) if values else None
