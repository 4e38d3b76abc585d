"""Collect a sweep folder's per-cell records and summarise them per setting and alpha (mean +- SEM over
seeds). Failed, diverged and missing cells are counted, never silently dropped."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from mfsweep.sweep.record import RECORD, check_record

# Record keys that, with the dataset, tell settings of one sweep apart (alpha and seed are the grid).
SETTING_KEYS = ("task", "dataset", "dim", "tangent", "anchor_weight", "adaptive_p")


@dataclass
class Cell:
    path: Path
    record: dict[str, Any]


def collect(sweep_dir: str | Path) -> list[Cell]:
    """Every `result.json` below `sweep_dir`; unreadable ones become failed cells naming the file."""
    cells = []
    for path in sorted(Path(sweep_dir).rglob(RECORD)):
        try:
            record = json.loads(path.read_text())
            check_record(record, where=str(path))
        except (ValueError, OSError) as exc:
            raise ValueError(f"{path}: not a valid record ({exc})") from exc
        cells.append(Cell(path.parent, record))
    return cells


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
    """One (setting, alpha) of a sweep, over its seeds."""

    setting: dict[str, Any]
    alpha: float
    seeds: list[int] = field(default_factory=list)
    status: dict[int, str] = field(default_factory=dict)  # seed -> completed | failed | diverged | missing
    stats: dict[str, tuple[float | None, float | None]] = field(default_factory=dict)

    def count(self, status: str) -> int:
        return sum(1 for s in self.status.values() if s == status)


def setting_of(record: dict[str, Any]) -> tuple:
    return tuple(record.get(k) for k in SETTING_KEYS)


def setting_label(setting: dict[str, Any], varying: list[str]) -> str:
    """The dataset, plus whichever setting keys vary across the sweep."""
    extra = [f"{k}={setting[k]}" for k in varying if k != "dataset"]
    return " ".join([str(setting["dataset"])] + extra)


def summarise(cells: list[Cell], metrics: tuple[str, ...] = ("sw1", "sw2", "fid", "grad_var")) -> list[Row]:
    """Rows per (setting, alpha). The expected grid of a setting is every alpha x every seed seen in it;
    cells of that grid without a record are `missing`."""
    by_setting: dict[tuple, list[Cell]] = {}
    for c in cells:
        by_setting.setdefault(setting_of(c.record), []).append(c)
    rows = []
    for key, group in sorted(by_setting.items(), key=lambda kv: tuple(str(x) for x in kv[0])):
        alphas = sorted({c.record["alpha"] for c in group})
        seeds = sorted({c.record["seed"] for c in group})
        index = {(c.record["alpha"], c.record["seed"]): c.record for c in group}
        for a in alphas:
            row = Row(dict(zip(SETTING_KEYS, key)), a, seeds)
            done = []
            for s in seeds:
                rec = index.get((a, s))
                row.status[s] = rec["status"] if rec else "missing"
                if rec and rec["status"] == "completed":
                    done.append(rec)
            for m in metrics:
                row.stats[m] = mean_sem(r["metrics"].get(m) for r in done)
            rows.append(row)
    return rows


def varying_keys(rows: list[Row]) -> list[str]:
    return [k for k in SETTING_KEYS if len({str(r.setting[k]) for r in rows}) > 1]
