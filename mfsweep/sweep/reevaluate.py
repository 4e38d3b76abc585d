"""Evaluating a finished sweep again from its checkpoints, with other evaluation settings and no training
(`mfsweep-evaluate`, docs/method.md 5): every job's final checkpoint (`runner.checkpoint_path`, kept after the
job completes) holds its members' evaluation EMA; the job's task is rebuilt from its cells' own `config.yaml`,
loaded with those weights and evaluated once for all members (packed). Each completed cell gets
`evaluations/<name>.json`: its record's `metrics` (training's part unchanged, the evaluation's recomputed) and
`eval` block, which `mfsweep-report --evaluation NAME` reads in place of `result.json`'s.

A sweep must keep, per cell, `result.json` and `config.yaml`, and per job `checkpoints/<key>/last.ckpt` beside
the cells.
"""
from __future__ import annotations

import hashlib
import json
import math
import re
from collections import defaultdict
from pathlib import Path
from typing import Any, Collection, Sequence

from omegaconf import DictConfig, OmegaConf

from mfsweep.atomic import write_json_atomic
from mfsweep.sweep.plan import PLAN
from mfsweep.sweep.record import RECORD, grid_alpha, read_record

EVALUATIONS = "evaluations"
EVAL_METRICS = ("sw1", "sw2", "fid")  # the metrics an evaluation recomputes; the others are training's


class EvaluationError(ValueError):
    """A cell that cannot be re-evaluated (no checkpoint, or not the one it was trained to); names the cell."""


def evaluation_path(cell_dir: Path, name: str) -> Path:
    return Path(cell_dir) / EVALUATIONS / f"{name}.json"


def evaluation_name(overrides: Sequence[str]) -> str:
    """The default `--name`: the overrides, as a file name (`eval.draw=3,eval.n_samples=50000`)."""
    name = ",".join(sorted(o.lstrip("+") for o in overrides)) or "training"
    return re.sub(r"[^A-Za-z0-9=.,_+-]", "_", name)


def _completed(sweep_dir: Path) -> dict[Path, dict[str, Any]]:
    cells = {}
    for path in sorted(sweep_dir.rglob(RECORD)):
        if EVALUATIONS not in path.parts and (r := read_record(path.parent)) and r["status"] == "completed":
            cells[path.parent] = r
    return cells


def _plan_jobs(sweep_dir: Path) -> list[list[Path]]:
    """Each job's cell folders in the order its process trained them (the plan's order), one list per job.
    A cell that the plan's latest launch of it found recorded has no job there (`job` null, whatever job of
    an earlier launch trained it): it is left to the folder grouping."""
    path = sweep_dir / PLAN
    if not path.exists():
        return []
    jobs: dict[tuple, list[Path]] = defaultdict(list)
    for e in json.loads(path.read_text())["cells"]:
        if e.get("job") is not None:
            jobs[(e.get("launch"), e["job"])].append(sweep_dir / e["dir"])
    return list(jobs.values())


def _context_groups(completed: dict[Path, dict[str, Any]]) -> list[list[Path]]:
    """For cells without a job in a plan (a job run outside a multirun, or a cell a relaunch found recorded): the
    cells of one folder as one packed job, in the order a job lists its members (alpha-major or seed-major),
    and each cell alone."""
    by_folder: dict[Path, list[Path]] = defaultdict(list)
    for c in completed:
        by_folder[c.parent].append(c)
    groups = []
    for cells in by_folder.values():
        key = lambda c, major: (completed[c]["alpha"], completed[c]["seed"])[::major]  # noqa: E731
        groups += [sorted(cells, key=lambda c: key(c, 1)), sorted(cells, key=lambda c: key(c, -1))]
    return groups + [[c] for c in completed]


def _checkpoint(cells: list[Path]) -> Path | None:
    """The job checkpoint of `cells` (runner.checkpoint_path: in the context folder, keyed by the cell names)."""
    for depth in (1, 2):  # a cell's name is `alpha=A,seed=S`, or below its setting's folder
        contexts = {c.parents[depth - 1] for c in cells}
        if len(contexts) != 1:
            continue
        context = contexts.pop()
        names = [str(c.relative_to(context)) for c in cells]
        key = hashlib.sha1(",".join(names).encode()).hexdigest()[:12]
        if (ckpt := context / "checkpoints" / key / "last.ckpt").exists():
            return ckpt
    return None


def jobs(sweep_dir: Path) -> list[tuple[Path, list[Path]]]:
    """(checkpoint, the job's cell folders) for every job with a completed cell, each cell's latest job first (the
    plan's jobs before the folder groupings); EvaluationError naming the first completed cell whose job's
    checkpoint is missing."""
    completed = _completed(sweep_dir)
    found, placed = [], set()
    groups = _plan_jobs(sweep_dir) + _context_groups(completed)
    for cells in groups:
        if not any(c in completed and c not in placed for c in cells):
            continue
        # a relaunch may have trained only the cells left over: their checkpoint is keyed by those
        for members in (cells, [c for c in cells if c in completed]):
            if (ckpt := _checkpoint(members)) is not None:
                found.append((ckpt, members))
                placed.update(members)
                break
    for c in completed:
        if c not in placed:
            raise EvaluationError(f"{c}: no checkpoint of the job that trained this cell was found (a sweep keeps "
                                  "checkpoints/<key>/last.ckpt beside its cells to be re-evaluated)")
    return found


def _job_config(cells: list[Path], overrides: Sequence[str], defaults: DictConfig | None) -> tuple[DictConfig, list[dict]]:
    """The first cell's config with the evaluation `overrides` (on `defaults`' eval section when given), and
    each member's own values of the keys that differ between the job's cells (its per-member settings)."""
    configs = [OmegaConf.load(c / "config.yaml") for c in cells]
    flat = [_leaves(OmegaConf.to_container(c)) for c in configs]
    differ = sorted(k for k in set().union(*flat) if k not in ("alpha.value", "seed")
                    and len({json.dumps(f.get(k), sort_keys=True) for f in flat}) > 1)
    cfg = configs[0]
    if defaults is not None:
        OmegaConf.update(cfg, "eval", OmegaConf.merge(cfg.eval, defaults), merge=False)
    for o in overrides:
        key, _, value = o.lstrip("+").partition("=")
        if not key.startswith("eval.") or not value:
            raise EvaluationError(f"override {o!r}: only eval.<key>=<value> can change in a re-evaluation")
        OmegaConf.update(cfg, key, yaml_value(value), force_add=True)
    return cfg, [{k: f[k] for k in differ if k in f} for f in flat]


def yaml_value(text: str) -> Any:
    import yaml

    return yaml.safe_load(text)


def _leaves(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        out = {}
        for k, v in tree.items():
            out |= _leaves(v, f"{prefix}{k}.")
        return out
    return {prefix[:-1]: tree}


def restore_job(ckpt: Path, cells: list[Path], overrides: Sequence[str] = (),
                defaults: DictConfig | None = None) -> tuple[Any, DictConfig, list[dict[str, Any]]]:
    """One job's task rebuilt from its cells' configs (with the evaluation `overrides`, on `defaults`' eval
    section when given) and loaded with `ckpt`'s evaluation EMA, in eval mode; its composed config and the
    cells' records. EvaluationError if the checkpoint does not fit the cells or is not at their records' step."""
    import torch

    from mfsweep.tasks import build_task

    records = [read_record(c) for c in cells]
    cfg, settings = _job_config(cells, overrides, defaults)
    task = build_task(cfg, [grid_alpha(r) for r in records], [r["seed"] for r in records], settings)
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    try:
        task.load_state_dict(state["state_dict"])
    except RuntimeError as exc:
        raise EvaluationError(f"{cells[0]}: checkpoint {ckpt} does not fit the job's cells "
                              f"({str(exc).splitlines()[0]})") from None
    for c, r in zip(cells, records):
        if r["status"] == "completed" and r["steps"] != state["global_step"]:
            raise EvaluationError(f"{c}: checkpoint {ckpt} is at step {state['global_step']}, the record at step "
                                  f"{r['steps']}: not the weights it was evaluated with")
    task.eval()
    return task, cfg, records


def evaluate_job(ckpt: Path, cells: list[Path], overrides: Sequence[str], name: str,
                 defaults: DictConfig | None = None, skip: Collection[Path] = ()) -> list[Path]:
    """Evaluate one job's members from `ckpt` and write each completed cell's `evaluations/<name>.json`, except
    the cells in `skip`: a cell a relaunch trained again is also a member of its first job, whose checkpoint
    holds its earlier weights; `jobs` lists the later job first, so the caller skips what it has written."""
    task, cfg, records = restore_job(ckpt, cells, overrides, defaults)
    results = task.evaluate(**cfg.eval)
    written = []
    for c, r, res in zip(cells, records, results):
        if r["status"] != "completed" or c in skip:
            continue
        # the record's keys in its order, the evaluation's values replacing (or nulling) the evaluation's metrics
        metrics = {k: None if k.startswith(EVAL_METRICS) else v for k, v in r["metrics"].items()}
        # a standard error is None with one split or block
        new = {k: v if v is not None and math.isfinite(v) else None for k, v in res.metrics.items()}
        out = {"name": name, "overrides": list(overrides), "checkpoint": str(ckpt), "steps": r["steps"],
               "metrics": metrics | new, "eval": res.info}
        written.append(write_json_atomic(evaluation_path(c, name), out))
    return written


def read_evaluation(cell_dir: Path, name: str) -> dict[str, Any]:
    path = evaluation_path(cell_dir, name)
    if not path.exists():
        raise ValueError(f"{cell_dir}: no evaluation {name!r} ({path} is missing); "
                         f"run `mfsweep-evaluate SWEEP_DIR ... --name {name}`")
    try:
        evaluation = json.loads(path.read_text())
        if not isinstance(evaluation, dict) or not {"metrics", "eval"} <= evaluation.keys():
            raise ValueError("no metrics and eval blocks")
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path} is unreadable ({str(exc).splitlines()[0][:80]}); write it again with "
                         f"`mfsweep-evaluate SWEEP_DIR ... --name {name}`") from None
    return evaluation
