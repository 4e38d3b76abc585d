"""Alpha schedules and other proxies against the constant-alpha grid they were run beside (docs/extending.md).

A sweep (or several folders reported together) may hold, for one dataset, the constant-alpha grid and
settings that differ from it only in the method: a schedule (`alpha=cosine`, `alpha=adaptive`) or another
proxy at some alpha (`tangent=velocity_head alpha.value=1`). Each such method is compared, paired by seed
(cells of one seed share initial weights, data, noise and times, docs/design.md), with the grid's alpha = 0
(vanilla MeanFlow) and with its best constant alpha; and, unadjusted, at every checkpoint both logged, so that a
verdict that moves with training length shows.

The calls come from simultaneous intervals, one family per method: the method minus each of the grid's constant
alphas, Bonferroni over those alphas (docs/method.md 7, "Methods against the grid"). The best constant alpha is
picked from the same seeds, so its plain t-interval against the method is not a 95% claim; with every interval
of the family covering at once, "lower than every constant alpha" and "higher than alpha = a" are. The
unadjusted intervals stay beside them, labelled, for comparison with the paper.

    for m in compare_methods(settings, read_history):
        m.sentence()     # "two_moons: adaptive: SW1 0.0501 ± 0.0012 over 3 seeds; against alpha = 0 ..."
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from mfsweep.report.aggregate import Row, Setting, best_alpha, mean_sem, setting_label
from mfsweep.report.answers import critical
from mfsweep.report.formatting import decimals, fmt_pm
from mfsweep.sweep.record import CONSTANT, alpha_schedule, spec_label, tangent_spec
from mfsweep.report.verdict import (CONFIDENCE, Interval, paired_by_seed, paired_interval, quality_metric,
                                   seed_values, values_at_steps)

# Setting keys that make a method rather than a base to compare on: the schedule and the proxy (as record
# specs, and as the command line's group choices and keys), and the measurement cadence, which does not change
# what is trained (each measurement draws from its own random stream).
METHOD_KEYS = ("alpha_schedule", "tangent", "alpha", "folder")
METHOD_PREFIXES = ("alpha.", "tangent.", "grad_var.", "diagnostics.", "eval.every")


def base_key(keys: dict[str, Any]) -> str:
    """What a method's setting shares with the grid it is compared with: every key but the method's own."""
    base = {k: v for k, v in keys.items() if k not in METHOD_KEYS and not k.startswith(METHOD_PREFIXES)}
    return json.dumps(base, sort_keys=True, default=str)


def is_grid(setting: Setting) -> bool:
    """A constant-alpha setting with alpha = 0 and at least one other alpha: something to compare against."""
    return setting.keys.get("alpha_schedule") == CONSTANT and setting.row(0.0) is not None and len(setting.rows) > 1


def simultaneous(method: dict[int, float], grid: dict[float, dict[int, float]],
                 level: float = CONFIDENCE) -> dict[float, Interval]:
    """`method - grid[a]` per seed for every constant alpha `a`, each interval at the Bonferroni share of
    1 - `level` over the alphas with paired seeds, so that all cover their true differences at once with
    probability at least `level` (Student's t per alpha: exact under normal per-seed differences)."""
    plain = {a: paired_by_seed(method, v) for a, v in grid.items()}
    k = sum(iv.n > 0 for iv in plain.values())
    out = {}
    for a, iv in plain.items():
        if iv.sem is not None:
            half = critical(iv.n, k, level=level) * iv.sem
            iv = Interval(iv.mean, iv.sem, iv.n, iv.mean - half, iv.mean + half)
        out[a] = iv
    return out


def against_constants(family: dict[float, Interval]) -> tuple[str, float | None]:
    """What a method's simultaneous family (`simultaneous`) claims about the constant alphas: `("lower", None)`
    when the method is distinguishably lower than every one (so than the truly best, whichever it is),
    `("higher", a)` when some constant alpha `a` is distinguishably lower than the method (the one with the
    largest lower bound), else `("neither", None)`."""
    ivs = [iv for iv in family.values() if iv.low is not None]
    if ivs and len(ivs) == len(family) and all(iv.high < 0 for iv in ivs):
        return "lower", None
    above = [(iv.low, a) for a, iv in family.items() if iv.low is not None and iv.low > 0]
    return ("higher", max(above)[1]) if above else ("neither", None)


@dataclass
class MethodResult:
    """One method (a schedule's setting, or one alpha of another proxy) against its grid, on `metric`.
    Differences are method minus grid, per seed (negative: the method is better). `vs_zero` and `vs_best` are
    members of the simultaneous family `family` (alpha -> interval); `unadjusted` has the plain 95% t-intervals
    against alpha = 0 and the best constant alpha, as the paper would compute them."""

    base: str  # the grid's label (the dataset and what else tells the grid apart)
    grid: Setting  # the constant-alpha grid it is compared with
    method: str  # short: `adaptive`, `cosine`, `velocity_head, alpha = 1`
    spec: str  # the schedule and proxy in full
    setting: Setting
    row: Row
    metric: str
    mean_alpha: float | None
    stat: dict[str, Any]
    vs_zero: Interval
    best_constant: float | None
    vs_best: Interval | None
    grad_var: tuple[float | None, float | None]
    wall_s: tuple[float | None, float | None]
    family: dict[float, Interval] = field(default_factory=dict)
    unadjusted: tuple[Interval | None, Interval | None] = (None, None)  # against alpha = 0, the best constant
    steps: list[tuple[int, Interval]] = field(default_factory=list)  # against alpha = 0 at matched checkpoints

    def against_constants(self) -> tuple[str, float | None]:
        """The family's claim about the constant alphas (`against_constants` below)."""
        return against_constants(self.family)

    def sentence(self) -> str:
        m, s = self.metric.upper(), self.stat
        head = f"{self.base}: {self.method}"
        if s["mean"] is None:
            return f"{head}: no completed seed recorded {m}."
        n = s["n"]
        text = f"{head}: {m} {fmt_pm(s['mean'], s['sem'])} over {n} seed{'s' * (n != 1)}"
        if self.mean_alpha is not None and self.row.grid_alpha is None:
            text += f" (mean alpha {self.mean_alpha:.2f})"
        plain_zero, plain_best = self.unadjusted
        text += "; against alpha = 0: " + judged(self.vs_zero, plain_zero)
        if self.vs_best is not None and self.best_constant not in (None, 0.0):
            text += f"; against the best constant alpha ({self.best_constant:g}): " + judged(self.vs_best, plain_best)
        elif self.best_constant == 0.0:
            text += "; alpha = 0 is also the grid's best constant alpha"
        if self.vs_zero.sem is not None:
            call, alpha = self.against_constants()
            k = sum(iv.n > 0 for iv in self.family.values())
            text += f"; against all {k} constant alphas at once: " + (
                "lower than every one" if call == "lower" else f"higher than alpha = {alpha:g}" if call == "higher"
                else "neither lower than all nor higher than any")
        return text + "."


def _bounds(iv: Interval) -> str:
    places = decimals(iv.sem, iv.mean)
    return f"[{iv.low:+.{places}f}, {iv.high:+.{places}f}]"


def judged(iv: Interval, plain: Interval | None = None) -> str:
    """`-0.0031 ± 0.0009 over 3 paired seeds, not distinguishable from zero (simultaneous 95% [-0.0071,
    +0.0009]; unadjusted [-0.0050, -0.0012])`: paired mean ± SEM and the call of the simultaneous interval `iv`,
    with the unadjusted t-interval `plain` beside it."""
    if iv.mean is None:
        return "no paired seeds"
    size = fmt_pm(iv.mean, iv.sem, sign=True)
    if iv.sem is None:
        return f"{size} ({iv.n} paired seed: too few to tell from zero)"
    call = ("not distinguishable from zero" if not iv.distinguishable else "lower" if iv.mean < 0 else "higher")
    bounds = f"simultaneous {CONFIDENCE:.0%} {_bounds(iv)}"
    if plain is not None and plain.sem is not None:
        bounds += f"; unadjusted, as in the paper, {_bounds(plain)}"
    return f"{size} over {iv.n} paired seeds, {call} ({bounds})"


def _labels(methods: list[tuple[Setting, Row]], grid_tangent: str) -> list[str]:
    """Short method names: the schedule's name (or `alpha = a` for a constant), the proxy's name where it is not
    the grid's, and whichever spec keys tell apart methods of the same name."""
    specs = []
    for _, row in methods:
        record = next(iter(row.cells.values())).record
        specs.append((alpha_schedule(record), tangent_spec(record)))
    names = []
    for (schedule, tangent), (_, row) in zip(specs, methods):
        same = [(s, t) for s, t in specs if s["name"] == schedule["name"] and t["name"] == tangent["name"]]
        differ = [k for k in schedule if k not in ("name", "value")
                  and len({json.dumps(s.get(k), default=str) for s, _ in same}) > 1]
        name = f"alpha = {row.alpha:g}" if schedule["name"] == CONSTANT else schedule["name"]
        name += "".join(f", {k}={schedule[k]}" for k in differ)
        names.append(name if tangent["name"] == grid_tangent else f"{tangent['name']}, {name}")
    return names


def compare_methods(settings: list[Setting], read_history: Callable[[Any], dict[str, np.ndarray]] | None = None,
                    checkpoint: str = "eval/sw1") -> list[MethodResult]:
    """Every method beside a grid in `settings`, in their order. `read_history(cell)` (aggregate.read_history)
    adds the paired difference to alpha = 0 at each checkpoint of `checkpoint` both logged."""
    by_base: dict[str, list[Setting]] = {}
    for s in settings:
        by_base.setdefault(base_key(s.keys), []).append(s)
    grids = {b: max(found, key=lambda s: len(s.rows))  # two grids (two proxies): the fuller one is the reference
             for b, group in by_base.items() if (found := [s for s in group if is_grid(s)])}
    bases = {b: json.loads(b) for b in grids}
    shown = [k for k in dict.fromkeys(k for d in bases.values() for k in d)
             if len({json.dumps(d.get(k), default=str) for d in bases.values()}) > 1]
    out = []
    for b, grid in grids.items():
        group = by_base[b]
        metric = quality_metric(grid)
        zero = grid.row(0.0)
        best = best_alpha(grid, metric)
        constants = {r.alpha: seed_values(r, metric) for r in grid.rows}
        at_zero, at_best = constants[0.0], (constants[best] if best is not None else {})
        grid_tangent = tangent_spec(next(iter(zero.cells.values())).record)["name"] if zero.cells else ""
        methods = [(s, r) for s in group if s is not grid for r in s.rows if r.cells]
        for (s, row), name in zip(methods, _labels(methods, grid_tangent)):
            record = next(iter(row.cells.values())).record
            mine = seed_values(row, metric)
            alphas = [c.record["alpha"] for c in row.completed() if c.record.get("alpha") is not None]
            family = simultaneous(mine, constants)
            result = MethodResult(
                setting_label(bases[b], shown), grid, name,
                f"{spec_label(alpha_schedule(record))} with {spec_label(tangent_spec(record))}", s, row, metric,
                float(np.mean(alphas)) if alphas else None, row.stat(metric), family[0.0], best,
                family.get(best), mean_sem(seed_values(row, "grad_var").values()),
                mean_sem(c.record.get("wall_s") for c in row.completed()), family,
                (paired_by_seed(mine, at_zero), paired_by_seed(mine, at_best) if best is not None else None))
            if read_history is not None:
                result.steps = _matched(row, zero, read_history, checkpoint)
            out.append(result)
    return out


def _matched(row: Row, zero: Row, read: Callable[[Any], dict[str, np.ndarray]], key: str) -> list[tuple[int, Interval]]:
    """The paired difference to alpha = 0 at every step where each seed completed at both logged `key`."""
    def values(r: Row) -> dict[int, dict[int, float]]:
        return {s: values_at_steps(read(r.cells[s]), key) for s in r.seeds if r.status[s] == "completed"}

    mine, base = values(row), values(zero)
    seeds = sorted(mine.keys() & base.keys())
    if not seeds:
        return []
    steps = sorted(set.intersection(*(set(mine[s]) & set(base[s]) for s in seeds)))
    return [(step, paired_interval([mine[s][step] - base[s][step] for s in seeds])) for step in steps]
