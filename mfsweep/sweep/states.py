"""Where each planned cell of a sweep stands: its record's status, or, for a cell without one, why it is
missing, from its lock, its job's checkpoint and SLURM's accounting (`sacct`) where available."""
from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mfsweep.sweep.lock import describe, read_lock, stale
from mfsweep.sweep.plan import read_plan
from mfsweep.sweep.record import UNREADABLE, UnreadableRecord, read_record

# sacct's final states of an array task, as the reason its cells have no record.
SLURM_REASONS = {"CANCELLED": "cancelled", "TIMEOUT": "timed out", "FAILED": "job failed", "NODE_FAIL": "node failed",
                 "OUT_OF_MEMORY": "out of memory", "BOOT_FAIL": "job failed", "DEADLINE": "timed out",
                 "PREEMPTED": "preempted", "PENDING": "pending", "REQUEUED": "pending (requeued)",
                 "RUNNING": "running", "COMPLETED": "job ended without a record"}


@dataclass
class PlannedCell:
    """A planned cell as it stands: its plan entry, its folder, its state and, when missing, why."""

    entry: dict[str, Any]
    dir: Path
    state: str  # completed | failed | diverged | missing
    reason: str | None = None  # why a missing cell is missing: unreadable record, cancelled, running, never started ...
    record: dict[str, Any] | None = None


def slurm_states(tasks: set[str]) -> dict[str, str]:
    """sacct's current state of each `<array>_<task>` id; {} without sacct or when it fails."""
    if not tasks or shutil.which("sacct") is None:
        return {}
    arrays = sorted({t.split("_")[0] for t in tasks})
    try:
        done = subprocess.run(["sacct", "-n", "-X", "-P", "-o", "JobID,State", "-j", ",".join(arrays)],
                              capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return {}
    if done.returncode != 0:
        return {}
    rows = (line.split("|") for line in done.stdout.splitlines() if "|" in line)
    return {job: state.split()[0] for job, state in rows if state}  # 'CANCELLED by 0' -> 'CANCELLED'


def missing_reason(cell_dir: Path, slurm_state: str | None) -> str:
    """Why a cell has no record: SLURM's word when its task ended or waits, else its lock, else its
    checkpoint, else 'never started'."""
    if slurm_state in SLURM_REASONS and slurm_state not in ("RUNNING", "COMPLETED"):
        return SLURM_REASONS[slurm_state]
    lock = read_lock(cell_dir)
    if lock is not None:
        return f"running ({describe(lock)})" if not stale(lock) else f"interrupted (stale lock of {describe(lock)})"
    if slurm_state:
        return SLURM_REASONS.get(slurm_state, slurm_state.lower())
    if any((cell_dir.parent / "checkpoints").glob("*/last.ckpt")):
        return "interrupted (resumes from its checkpoint)"
    return "never started"


def planned_cells(root: Path, plan: dict[str, Any] | None = None) -> list[PlannedCell]:
    """Every cell of the folder's plan with its state ([] without a plan)."""
    plan = plan if plan is not None else read_plan(root)
    if not plan:
        return []
    entries = plan["cells"]
    slurm = slurm_states({e["array_task"] for e in entries if e.get("array_task")}) \
        if "slurm" in plan.get("launcher", "") else {}
    out = []
    for e in entries:
        cell_dir = Path(root) / e["dir"]
        try:
            record = read_record(cell_dir)
        except UnreadableRecord as exc:
            out.append(PlannedCell(e, cell_dir, "missing", f"{UNREADABLE} ({exc.why})"))
            continue
        if record is not None:
            out.append(PlannedCell(e, cell_dir, record["status"], record=record))
        else:
            out.append(PlannedCell(e, cell_dir, "missing", missing_reason(cell_dir, slurm.get(e.get("array_task")))))
    return out
