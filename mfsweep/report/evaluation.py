"""The evaluation's own noise in a report (docs/method.md 5): which evaluation the records come from
(`--evaluation NAME`, mfsweep/sweep/reevaluate.py), that every compared cell was evaluated alike, and the
evaluation's standard error of a paired difference beside the seeds' SEM.

A record of the split estimator keeps its K per-split values (`eval.splits`). The splits are independent
given the trained weights (disjoint generated points and reference pools, their own rotations), and the
cells of one seed share them across alphas (common random numbers), so for one seed the per-split
differences d_k are independent draws whose mean is the recorded difference: its evaluation variance is
var_k(d_k) / K, with no assumption about how the estimator scales with its size. Over n seeds, whose
evaluations are independent, the mean difference's evaluation SE is sqrt(sum_s var_s) / n.

A FID record keeps its K jackknife pseudo-values instead (mfsweep/metrics/fid.py): p_k = K FID - (K - 1) FID
without block k, the blocks aligned by sample index across the alphas of a seed (they share the generated
noise). The pseudo-values are linear in the FIDs, so d_k are the pseudo-values of the paired difference
itself, and var_k(d_k) / K is its jackknife variance: the same formula, although the p_k are not independent
draws and their mean is not the recorded difference.
"""
from __future__ import annotations

from typing import Any, Iterable, Sequence

import numpy as np

from mfsweep.sweep.reevaluate import read_evaluation

SIGNATURE_KEYS = ("estimator", "n_samples", "reference_ratio", "n_splits", "n_projections", "projection_seed",
                  "draw", "n_steps", "fid_samples")


def signature(record: dict[str, Any]) -> tuple:
    """How a record's quality metrics were measured; records before estimators were named used `samples`, and
    records before draws existed draw 0. FID's jackknife blocks are not in it: they leave FID unchanged, and a
    pair of records whose blocks differ (or one without) just has no evaluation SE (`paired_eval_se`)."""
    ev = record.get("eval") or {}
    defaults = {"draw": 0} | ({"estimator": "samples"} if "n_projections" in ev else {})
    return tuple((k, ev.get(k, defaults.get(k))) for k in SIGNATURE_KEYS if k in ev or k in defaults)


def use_evaluation(cells: Iterable[Any], name: str | None) -> None:
    """Give each completed cell the `metrics` and `eval` of its evaluation `name` (ValueError naming a cell
    that has none)."""
    if name is None:
        return
    for c in cells:
        if c.record.get("status") == "completed":
            ev = read_evaluation(c.path, name)
            c.record = c.record | {"metrics": ev["metrics"], "eval": ev["eval"]}


def check_alike(cells: Iterable[Any], sweep_dir: Any = "SWEEP_DIR") -> None:
    """ValueError, in one line that says how to re-evaluate, when completed cells of one task were evaluated
    differently (their paired differences would mix estimators, sizes or draws)."""
    seen: dict[Any, dict[tuple, Any]] = {}
    for c in cells:
        if c.record.get("status") != "completed":
            continue
        seen.setdefault(c.record.get("task"), {}).setdefault(signature(c.record), c.path)
    for task, sigs in seen.items():
        if len(sigs) > 1:
            (a, pa), (b, pb) = list(sigs.items())[:2]
            diff = ", ".join(f"{k}={dict(a).get(k)} vs {dict(b).get(k)}" for k in SIGNATURE_KEYS
                             if dict(a).get(k) != dict(b).get(k))
            raise ValueError(f"cells evaluated differently ({diff}: {pa} and {pb}); evaluate them alike with "
                             f"`mfsweep-evaluate {sweep_dir} --defaults --name NAME` and report with "
                             f"`--evaluation NAME`")


def paired_eval_se(pairs: Sequence[tuple[dict[str, Any], dict[str, Any]]], metric: str) -> float | None:
    """The evaluation SE of the mean over seeds of `metric`(a) - `metric`(b), from the records' per-split
    values; `pairs` holds one (record a, record b) per seed. None when a record has no splits."""
    variances = []
    for a, b in pairs:
        sa, sb = ((r.get("eval") or {}).get("splits", {}).get(metric) for r in (a, b))
        if not sa or not sb or len(sa) != len(sb) or len(sa) < 2:
            return None
        d = np.asarray(sa) - np.asarray(sb)
        variances.append(d.var(ddof=1) / len(d))
    return float(np.sqrt(np.sum(variances)) / len(variances)) if variances else None
