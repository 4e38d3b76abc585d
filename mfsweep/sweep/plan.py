"""A sweep's plan, `plan.json` in the sweep folder: every cell a launch planned, so that nothing planned can
vanish from a report, and a relaunch submits only what is left.

Written atomically by the launching process (the Hydra sweeper) before it submits anything, and again as it
learns which SLURM array task owns which cell; a relaunch into the same folder merges its cells in (a cell
keeps its entry, with the ids of the launch that last submitted it). Each cell entry holds its folder
relative to the sweep root, its setting (the job's overrides other than alpha and seed), its alpha spec and
seed, the overrides of the job that trains it, and `launch`: the index (in `launches`) of the launch that last
planned it, whose job numbers its `job` counts.
"""
from __future__ import annotations

import json
import logging
import re
import time
from pathlib import Path
from typing import Any, Iterable, Sequence

from omegaconf import DictConfig, OmegaConf

from mfsweep.config.build import member_proxy, member_schedule
from mfsweep.config.members import packed_keys as config_packed_keys
from mfsweep.atomic import remove_temporaries, set_aside, write_json_atomic
from mfsweep.sweep.cells import NEUTRAL_PREFIXES, Cell, context_name, member_cells, setting_keys
from mfsweep.sweep.record import setting_fields

PLAN = "plan.json"
SCHEMA = 1
GRID_KEYS = ("alpha.value", "seed")  # what varies inside a setting; every other key makes the setting
# submitit's per-job folders: <array job id>_<task id>, or <job id> for a batch of one job (not an array)
TASK_DIR = re.compile(r"(\d+)(_\d+)?")
log = logging.getLogger("mfsweep")


class UnreadablePlan(ValueError):
    """A `plan.json` that is not a plan (truncated, garbage, another schema). The plan is derived data: the
    sweep's command rebuilds it, and the cells' records say where each stands."""

    def __init__(self, path: Path, why: str):
        super().__init__(f"{path} is unreadable ({why}): run the sweep's command again to rebuild it "
                         f"(its records are kept)")
        self.path, self.why = Path(path), why


def setting_of_overrides(overrides: Iterable[str]) -> dict[str, str]:
    """A job's setting: its overrides other than alpha, seed and those that do not change what it computes."""
    keys = {}
    for o in overrides:
        key, _, value = o.lstrip("+~").partition("=")
        if key not in GRID_KEYS and not key.startswith(NEUTRAL_PREFIXES):
            keys[key] = value
    return dict(sorted(keys.items()))


def override_value(value: Any) -> str:
    """A member's value as it would be written on the command line (`[0.9,0.999]`, `0.001`, `uniform`)."""
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def varying(settings: Iterable[dict[str, str]]) -> list[str]:
    """The setting keys whose value differs between `settings`."""
    settings = list(settings)
    keys = sorted({k for s in settings for k in s})
    return [k for k in keys if len({str(s.get(k)) for s in settings}) > 1]


def overrides_label(setting: dict[str, str], varying_keys: list[str]) -> str:
    """The keys that tell this setting from the sweep's others; for a sweep of one setting, its dataset."""
    shown = [f"{k}={setting[k]}" for k in varying_keys if k in setting]
    return " ".join(shown or [f"{k}={v}" for k, v in setting.items() if k == "dataset"]) or "all cells"


def record_keys(cfg: DictConfig, cell: Cell) -> dict[str, Any]:
    """The record keys a cell's record will have that tell settings apart (record.SETTING_KEYS), for
    a setting none of whose cells has a record yet: its schedule and proxy specs as its record will hold them."""
    own = cell.values()
    # the cell's own value of a packed key (`loss.adaptive_p=0.0,1.0` is a list in the job's config)
    get = lambda key: own[key] if key in own else OmegaConf.select(cfg, key)  # noqa: E731
    return setting_fields(get, task=get("dataset.task"), dim=get("dataset.dim"),
                          alpha_schedule=member_schedule(cfg, [own]).spec(0), tangent=member_proxy(cfg, [own]).spec(0))


def job_cells(cfg: DictConfig, root: Path, overrides: Sequence[str]) -> list[Cell]:
    """The cells a job trains, in the folders `mfsweep-train` gives them (the same calls as cli/train.train)."""
    packed_keys = config_packed_keys(cfg.sweep)
    context = context_name(overrides, packed_keys)
    return member_cells(root, context, cfg, setting_keys(overrides, packed_keys))


def plan_entries(cfg: DictConfig, root: Path, overrides: Sequence[str], job: int) -> list[dict[str, Any]]:
    """One plan entry per cell of a job; a cell's setting is the job's overrides with its own per-member values
    in place of the packed lists."""
    job_setting = setting_of_overrides(overrides)
    return [{"dir": str(c.dir.relative_to(root)),
             "setting": dict(sorted((job_setting | {k: override_value(v) for k, v in c.setting}).items())),
             "record_keys": (keys := record_keys(cfg, c)), "alpha": c.alpha, "alpha_spec": keys["alpha_schedule"],
             "seed": c.seed,
             "job": job, "overrides": list(overrides), "launched": False, "array_task": None}
            for c in job_cells(cfg, root, overrides)]


def read_plan(root: Path) -> dict[str, Any] | None:
    """The folder's plan; None when it has none; UnreadablePlan when its file is not a plan."""
    path = Path(root) / PLAN
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        plan = json.loads(text)
        if not isinstance(plan, dict) or plan.get("schema") != SCHEMA:
            raise ValueError(f"not a schema-{SCHEMA} plan")
        if not isinstance(plan.get("cells"), list) or not all(isinstance(c, dict) and "dir" in c for c in plan["cells"]):
            raise ValueError("its cells are not a list of plan entries")
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError included
        raise UnreadablePlan(path, str(exc)) from None
    return plan


def readable_plan(root: Path) -> dict[str, Any] | None:
    """The folder's plan for a launch to merge into; an unreadable one is moved aside (one warning line) and
    this launch rebuilds the plan from its command, the records telling where each cell stands."""
    remove_temporaries(root, (PLAN,))  # left by a launching process killed mid-write; a launch is the plan's writer
    try:
        return read_plan(root)
    except UnreadablePlan as exc:
        grave = set_aside(exc.path)
        log.warning("%s: unreadable (%s); moved aside to %s, rebuilding the plan from this command",
                    exc.path, exc.why, grave.name)
        return None


def write_plan(root: Path, plan: dict[str, Any]) -> Path:
    plan["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    return write_json_atomic(Path(root) / PLAN, plan)


def merge_plan(root: Path, command: list[str], launcher: str, entries: list[dict[str, Any]]) -> dict[str, Any]:
    """The folder's plan with this launch's cells merged in: earlier cells stay planned; a cell planned again
    takes this launch's entry (its job, overrides; its array task once submitted)."""
    old = readable_plan(root) or {"schema": SCHEMA, "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "cells": []}
    cells = {c["dir"]: c for c in old["cells"]}
    launch = len(old.get("launches", []))
    for e in entries:
        e["launch"] = launch
        if not e["launched"] and e["dir"] in cells:
            e["array_task"] = cells[e["dir"]].get("array_task")  # still the task of the launch that trained it
        cells[e["dir"]] = e
    launches = old.get("launches", []) + [{"command": command, "launcher": launcher,
                                           "at": time.strftime("%Y-%m-%dT%H:%M:%S")}]
    return old | {"command": command, "launcher": launcher, "launches": launches, "cells": list(cells.values())}


def submitted_tasks(root: Path) -> set[str]:
    """The `<array>_<task>` (or single `<job>`) ids submitit has made folders for under `root/.submitit` (at
    submission). An array also gets a folder named by its bare id, for its submission file: left out."""
    folder = Path(root) / ".submitit"
    names = {p.name for p in folder.iterdir() if TASK_DIR.fullmatch(p.name)} if folder.exists() else set()
    arrays = {n.split("_")[0] for n in names if "_" in n}
    return {n for n in names if "_" in n or n not in arrays}


def assign_tasks(plan: dict[str, Any], new_tasks: set[str], jobs: list[list[int]]) -> bool:
    """Give each cell this launch submitted its array task: submitit submits batch k of `jobs` (job numbers)
    as the k-th new array, job i of a batch as its task i. Job numbers restart at 0 in every launch, so only
    the latest launch's cells are matched. Returns whether anything changed."""
    arrays = sorted({t.split("_")[0] for t in new_tasks}, key=int)
    owner = {}
    for array, batch in zip(arrays, jobs):
        owner |= {job: f"{array}_{i}" for i, job in enumerate(batch) if f"{array}_{i}" in new_tasks}
        if array in new_tasks:  # a batch of one job, submitted as a plain job
            owner[batch[0]] = array
    latest, changed = len(plan["launches"]) - 1, False
    for c in plan["cells"]:
        if c.get("launched") and c.get("launch") == latest and c["job"] in owner and c.get("array_task") != owner[c["job"]]:
            c["array_task"], changed = owner[c["job"]], True
    return changed

