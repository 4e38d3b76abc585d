"""Where a sweep stands against its plan (plan.json): the planned cells by state, a table per setting, and the
exact command that resumes or retrains what is left (`mfsweep-status` prints it; the sweeper prints it at the
end of a launch)."""
from __future__ import annotations

import shlex
from collections import Counter
from pathlib import Path

from mfsweep.sweep.plan import overrides_label, read_plan, varying
from mfsweep.sweep.race import race_lines
from mfsweep.sweep.record import RECORD, UNREADABLE
from mfsweep.sweep.states import PlannedCell, planned_cells

ORDER = ("completed", "failed", "diverged", "missing")
# Launch tokens a resume command sets itself.
REPLACED = ("hydra.sweep.dir=", "sweep.rerun=")


def resume_command(plan: dict, root: Path, retrain_failed: bool) -> str:
    """The launch command again, into the same folder (so finished cells are skipped and interrupted ones
    resume), with `sweep.rerun=failed` when failed or diverged cells are to be trained again."""
    argv = list(plan["command"])
    program = Path(argv[0]).name if argv else "mfsweep-train"
    args = [a for a in argv[1:] if not a.startswith(REPLACED)]
    args += [f"hydra.sweep.dir={root}"] + (["sweep.rerun=failed"] if retrain_failed else [])
    return shlex.join([program, *args])


def _word(cell: PlannedCell) -> str:
    return {"completed": "ok", "failed": "FAILED", "diverged": "DIVERGED"}.get(cell.state) or cell.reason or "missing"


def setting_tables(cells: list[PlannedCell]) -> list[str]:
    """One small table per setting: alphas down, seeds across, each cell's state (or why it is missing)."""
    by_setting: dict[str, list[PlannedCell]] = {}
    settings = {}
    for c in cells:
        key = repr(sorted(c.entry["setting"].items()))
        by_setting.setdefault(key, []).append(c)
        settings[key] = c.entry["setting"]
    keys = varying(settings.values())
    lines = []
    for key, group in by_setting.items():
        seeds = sorted({c.entry["seed"] for c in group})
        alphas = sorted({c.entry["alpha"] for c in group}, key=lambda a: (a is None, a or 0.0))
        grid = {(c.entry["alpha"], c.entry["seed"]): c for c in group}
        tasks = sorted({c.entry["array_task"] for c in group if c.entry.get("array_task")})
        counts = Counter(c.state for c in group)
        lines.append(f"{overrides_label(settings[key], keys)}: {counts['completed']}/{len(group)} completed"
                     + (f"  (SLURM {', '.join(tasks)})" if tasks else ""))
        width = max([len(_word(c)) for c in group] + [8])
        # a schedule's cells (no grid alpha) are one row named by the schedule
        names = {a: f"{a:g}" if a is not None else str(group[0].entry.get("alpha_spec", {}).get("name", "schedule"))
                 for a in alphas}
        first = max([len(n) for n in names.values()] + [6]) + 2
        lines.append("  " + "alpha".ljust(first) + "".join(f"seed={s}".ljust(width + 2) for s in seeds))
        for a in alphas:
            row = [(_word(grid[a, s]) if (a, s) in grid else "-").ljust(width + 2) for s in seeds]
            lines.append("  " + names[a].ljust(first) + "".join(row).rstrip())
    return lines


def summary(root: Path) -> str:
    """The status text of sweep folder `root` (ValueError when it has no plan)."""
    plan = read_plan(root)
    if plan is None:
        raise ValueError(f"{root} has no plan.json (not a sweep folder, or launched before plans existed)")
    cells = planned_cells(root, plan)
    counts = Counter(c.state for c in cells)
    reasons = Counter(c.reason.split(" (")[0] for c in cells if c.state == "missing")
    head = f"{root}: {len(cells)} planned cells: " + ", ".join(f"{counts[s]} {s}" for s in ORDER)
    if reasons:
        head += " (" + ", ".join(f"{n} {r}" for r, n in sorted(reasons.items())) + ")"
    lines = [head, *setting_tables(cells)]
    if plan.get("race"):
        lines += race_lines(plan["race"], cells)
    bad = [c for c in cells if c.state in ("failed", "diverged")]
    for c in bad:
        error = (c.record or {}).get("error") or f"diverged at step {(c.record or {}).get('diverged_step')}"
        lines.append(f"{c.state}: {c.entry['dir']}: {error.strip().splitlines()[0][:160]}")
    for c in cells:
        if c.state == "missing" and c.reason.startswith(UNREADABLE):
            lines.append(f"{UNREADABLE}: {c.dir / RECORD}: {c.reason[len(UNREADABLE) + 2:-1]}; the command below "
                         "moves it aside and trains the cell again")
    waiting = [c for c in cells if c.state == "missing" and c.reason.startswith(("running", "pending"))]
    left = [c for c in cells if c.state == "missing" and c not in waiting] + bad
    if left:
        lines.append(f"to train the {len(left)} cells left ({'failed or diverged ones again, ' if bad else ''}"
                     f"finished ones are skipped, interrupted ones resume):")
        lines.append("  " + resume_command(plan, root, retrain_failed=bool(bad)))
    if waiting:
        lines.append(f"{len(waiting)} cells still running or pending: mfsweep-status {shlex.quote(str(root))} --watch")
    lines.append(f"report: mfsweep-report {shlex.quote(str(root))}")
    return "\n".join(lines)


def still_running(root: Path) -> bool:
    return any(c.state == "missing" and c.reason.startswith(("running", "pending")) for c in planned_cells(root))
