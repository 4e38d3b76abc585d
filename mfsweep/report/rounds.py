"""A race's round (`sweep.until=resolved`, mfsweep/sweep/race.py) decided from the records: per setting still
racing, its answer (`answers.decide`, on the report's aggregation and metric), the alphas it drops and whether
it stops. Only the race's own cells count: a folder may also hold others, e.g. an earlier grid's seeds."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from mfsweep.report.aggregate import alpha_rows, collect, group_settings
from mfsweep.report.answers import decide, margin_for
from mfsweep.report.verdict import quality_metric, seed_values
from mfsweep.sweep.race import race_seeds, seeds_per_alpha, settle


def setting_values(root: Path) -> dict[str, tuple[str, dict[float, dict[int, float]]]]:
    """Per setting folder (relative to `root`): its judged metric and {alpha: {seed: value}} of its completed
    cells, from the report's aggregation."""
    out = {}
    for s in group_settings(alpha_rows(collect(root))):
        folders = {c.path.parent for c in s.cells()}
        if len(folders) != 1:
            continue
        metric = quality_metric(s)
        out[str(folders.pop().relative_to(root))] = (metric, {r.grid_alpha: seed_values(r, metric) for r in s.rows
                                                              if r.grid_alpha is not None})
    return out


def decide_round(root: Path, race: dict[str, Any], seeds: list[int], alphas: dict[str, list[float]]) -> dict[str, Any]:
    """The round just trained (its `seeds`, the `alphas` of each racing setting), decided: the round's entry of
    `race["rounds"]`."""
    spec = race["spec"]
    k = len(race["rounds"]) + 1
    trial = race | {"rounds": race["rounds"] + [{"round": k, "seeds": seeds,
                                                   "settings": {s: {"alphas": a} for s, a in alphas.items()}}]}
    recorded = setting_values(root)
    settings = {}
    for setting, raced in alphas.items():
        metric, values = recorded.get(setting, (None, {}))
        own = race_seeds(trial, setting, k)
        values = {a: {s: v for s, v in values.get(a, {}).items() if s in own[a]} for a in own}
        if values.get(0.0):
            answer = decide(values, margin=margin_for(spec["margin"], values), look=k,
                            max_looks=spec["max_looks"], metric=metric, setting=setting).to_dict()
        else:  # no alpha = 0 cell completed: nothing to compare with, nothing to drop
            answer = {"answer": "unresolved", "best_alpha": None, "worse": []}
        n_zero = seeds_per_alpha(trial, setting)[0.0]
        settings[setting] = settle(raced, answer, n_zero, spec["max_seeds"]) | {"metric": metric}
    return {"round": k, "seeds": seeds, "settings": settings}

