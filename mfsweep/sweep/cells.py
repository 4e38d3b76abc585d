"""Grid cells and their folders.

A job trains the cells `alpha.value x seed` (lists in packed mode, single values per run). Each cell's
folder is `<sweep root>/<context>/alpha=A,seed=S`, where the context names the job's other overrides
(e.g. `dataset=swiss_roll`), so the folder depends only on what the cell is, not on which job or mode
trained it: a re-launched sweep finds its finished cells there and skips them.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from mfsweep.sweep.record import read_record, round_alpha

# Overrides that do not change what a cell computes, so they must not change its folder.
NEUTRAL_PREFIXES = ("hydra", "launcher", "logger", "sweep.", "trainer.progress", "trainer.accelerator", "trainer.devices")
# File systems cap a folder name at 255 bytes; a longer context keeps a readable prefix and a hash of the whole.
MAX_CONTEXT = 240
RERUN_CHOICES = {"none": (), "failed": ("failed", "diverged"), "all": ("completed", "failed", "diverged")}


@dataclass(frozen=True)
class Cell:
    alpha: float
    seed: int
    dir: Path

    @property
    def name(self) -> str:
        return cell_name(self.alpha, self.seed)


def cell_name(alpha: float, seed: int) -> str:
    return f"alpha={round_alpha(alpha):g},seed={int(seed)}"


def context_name(overrides: Iterable[str], packed_keys: Sequence[str] = ("alpha.value", "seed")) -> str:
    """The folder name for a job's other overrides, sorted: `dataset=swiss_roll,trainer.max_steps=300`.

    Names longer than `MAX_CONTEXT` become their first characters plus `~` and a hash of the full name, so
    the same overrides always map to the same folder."""
    kept = []
    for o in overrides:
        key = o.split("=", 1)[0].lstrip("+~")
        if key in packed_keys or key.startswith(NEUTRAL_PREFIXES):
            continue
        kept.append(re.sub(r"[^A-Za-z0-9_.=,\-+]", "_", o.lstrip("+~")))
    name = ",".join(sorted(kept))
    if len(name) <= MAX_CONTEXT:
        return name
    digest = hashlib.sha1(name.encode()).hexdigest()[:12]
    return f"{name[:MAX_CONTEXT - len(digest) - 1]}~{digest}"


def plan_cells(root: Path, context: str, alphas: Sequence[float], seeds: Sequence[int]) -> list[Cell]:
    base = Path(root) / context if context else Path(root)
    return [Cell(round_alpha(a), int(s), base / cell_name(a, s)) for a in alphas for s in seeds]


def needs_training(cell: Cell, rerun: str) -> bool:
    """Whether `cell` must be trained: no record yet, or a recorded status that `sweep.rerun` asks to redo."""
    if rerun not in RERUN_CHOICES:
        raise ValueError(f"sweep.rerun must be one of {tuple(RERUN_CHOICES)}, got {rerun!r}")
    record = read_record(cell.dir)
    return record is None or record["status"] in RERUN_CHOICES[rerun]
