"""STAND-IN for the engineer `answers`'s module (issue 22, part A): the same interface, a deliberately simple
rule (Bonferroni-adjusted paired t-intervals over alphas and planned looks), so the race can be built and
tested before theirs lands. Deleted when mfsweep/report/answers.py arrives on main."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Mapping

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class Answer:
    answer: str  # "better" | "no_better" | "equivalent" | "unresolved"
    best_alpha: float | None
    worse: tuple[float, ...]
    seeds: dict[float, int]
    seeds_needed: int | None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["worse"] = list(self.worse)
        d["seeds"] = {f"{a:g}": n for a, n in self.seeds.items()}
        return d

    def sentence(self) -> str:
        best = "-" if self.best_alpha is None else f"{self.best_alpha:g}"
        return f"{self.answer} (best alpha {best})"


def _interval(a: Mapping[int, float], b: Mapping[int, float], level: float) -> tuple[float, float] | None:
    seeds = sorted(a.keys() & b.keys())
    if len(seeds) < 2:
        return None
    d = np.array([a[s] - b[s] for s in seeds])
    half = stats.t.ppf(0.5 + level / 2, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))
    return float(d.mean() - half), float(d.mean() + half)


def decide(values: Mapping[float, Mapping[int, float]], *, margin: float, look: int = 1, max_looks: int = 1,
           level: float = 0.95) -> Answer:
    alphas = sorted(values)
    k = max(1, len(alphas) - 1) * max_looks
    adjusted = 1 - (1 - level) / k
    means = {a: float(np.mean(list(values[a].values()))) for a in alphas if values[a]}
    best = min(means, key=lambda a: (means[a], a)) if means else None
    seeds = {a: len(values[a]) for a in alphas}
    if best is None or 0.0 not in values:
        return Answer("unresolved", best, (), seeds, None)
    worse = tuple(a for a in alphas if a != best and a != 0.0 and (iv := _interval(values[a], values[best], adjusted))
                  and iv[0] > 0)
    vs_zero = {a: _interval(values[a], values[0.0], adjusted) for a in alphas if a != 0.0}
    if any(iv is None for iv in vs_zero.values()):
        return Answer("unresolved", best, worse, seeds, None)
    if best != 0.0 and vs_zero[best][1] < -margin:
        answer = "better"
    elif all(-margin < lo and hi < margin for lo, hi in vs_zero.values()):
        answer = "equivalent"
    elif all(lo > -margin for lo, _ in vs_zero.values()) and any(lo > 0 for lo, _ in vs_zero.values()):
        answer = "no_better"
    else:
        answer = "unresolved"
    return Answer(answer, best, worse, seeds, None)


def margin_in_units(margin: float, values: Mapping[float, Mapping[int, float]]) -> float:
    """`verdict.margin` (a fraction of alpha = 0's mean metric) in the metric's units."""
    return margin * float(np.mean(list(values[0.0].values())))
