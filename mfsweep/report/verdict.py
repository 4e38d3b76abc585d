"""The answer a sweep exists to give, per setting: which alpha is best, by how much against alpha = 0 (vanilla
MeanFlow), and how sure (docs/method.md 7).

The difference is paired by seed (cells of one seed share initial weights and every random draw across alphas,
docs/design.md). The setting's answer (`Verdict.answer`, mfsweep.report.answers) comes from simultaneous
intervals over all alphas; the best alpha's unadjusted two-sided t-interval is kept beside it, labelled, for
comparison with the paper:

    v = verdict(setting)                 # at the final step, from the records
    v.answer.sentence()                  # "swiss_roll: equivalent (flat): every alpha within ..."
    v.sentence()                         # "swiss_roll: best alpha = 0.3 ... (unadjusted 95% paired t-interval ...)"
    matched_steps(setting, histories)    # the same verdict at every checkpoint of history.csv
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from scipy import stats


from mfsweep.report.aggregate import (NOT_COMPLETED, Row, Setting, best_alpha, mean_sem, paired_difference,
                                      read_cell_config)
from mfsweep.report.answers import DEFAULT_MARGIN, Answer, check_margin, decide, margin_for
from mfsweep.report.formatting import decimals, fmt_pm

CONFIDENCE = 0.95
# Checkpoint metrics in the order the report looks for them: the 2-D/DGMM curve, then the DiT's FID.
CHECKPOINT_KEYS = ("eval/sw1", "eval/fid")


@dataclass
class Interval:
    """Mean ± SEM of per-seed differences and their two-sided t-interval (None for n < 2: no spread to judge)."""

    mean: float | None
    sem: float | None
    n: int
    low: float | None = None
    high: float | None = None

    @property
    def distinguishable(self) -> bool:
        """The interval excludes zero; never with fewer than two seeds."""
        return self.low is not None and (self.low > 0 or self.high < 0)


def paired_interval(diffs: Sequence[float], confidence: float = CONFIDENCE) -> Interval:
    """Mean, SEM and the t-interval `mean ± t_{(1+c)/2, n-1} SEM` of per-seed differences."""
    diffs = [float(d) for d in diffs]
    mean, sem = mean_sem(diffs)
    if sem is None:
        return Interval(mean, None, len(diffs))
    half = float(stats.t.ppf(0.5 + confidence / 2, len(diffs) - 1)) * sem
    return Interval(mean, sem, len(diffs), mean - half, mean + half)


def seed_values(row: Row | None, metric: str) -> dict[int, float]:
    """`metric` (from the records' `metrics`) of the row's completed cells, per seed."""
    if row is None:
        return {}
    return {s: v for s in row.seeds if row.status[s] == "completed"
            and (v := row.cells[s].record["metrics"].get(metric)) is not None}


def _by_seed(setting: Setting, alpha: float, metric: str) -> dict[int, float]:
    """The completed cells' `metric` at `alpha`, per seed."""
    return seed_values(setting.row(alpha), metric)


def paired_by_seed(a: dict[int, float], b: dict[int, float]) -> Interval:
    """`a - b` on the seeds both have."""
    return paired_interval([a[s] - b[s] for s in sorted(a.keys() & b.keys())])


def _interval_text(iv: Interval) -> str:
    places = decimals(iv.sem, iv.mean) if iv.sem else 4
    return f"unadjusted {CONFIDENCE:.0%} paired t-interval [{iv.low:+.{places}f}, {iv.high:+.{places}f}]"


@dataclass
class Verdict:
    """One setting's answer on `metric` (lower is better). `against` is the alpha compared with alpha = 0: the
    best alpha, or the runner-up when the best is alpha = 0 itself; `difference` is metric(against) - metric(0)."""

    setting: str
    metric: str
    best: float | None
    against: float | None
    difference: Interval | None
    seeds: int
    not_completed: dict[str, int]
    has_zero: bool
    alphas: int  # in the grid, completed or not
    at_zero: float | None = None
    measured: bool = True  # some completed cell recorded the metric  # mean metric at alpha = 0, to say the difference's size relative to it
    # under a schedule other than constant (no alpha grid): the metric's (mean, SEM, completed seeds)
    scheduled: tuple[float | None, float | None, int] | None = None
    # the setting's answer from simultaneous intervals (None without alpha = 0 and another alpha to compare)
    answer: Answer | None = None
    eval_se: float | None = None  # the evaluation's share of the difference's noise (report/evaluation.py)

    def sentence(self) -> str:
        m = self.metric.upper()
        head = f"{self.setting}: "
        if self.scheduled is not None and self.best is not None:
            mean, sem, n = self.scheduled
            return head + (f"an alpha schedule (mean alpha {self.best:g}): {m} {fmt_pm(mean, sem)} over {n} "
                           f"seed{'s' * (n != 1)}; compare with the constant-alpha settings beside it.") + self._caveat()
        if self.best is None:
            if not self.measured:
                return head + f"no verdict: no completed cell recorded {m}." + self._caveat()
            return head + f"no verdict: no alpha has all {self.seeds} seeds completed." + self._caveat()
        if not self.has_zero:
            return head + f"best alpha = {self.best:g} by mean {m}; the sweep has no alpha = 0 to compare with." \
                + self._caveat()
        d = self.difference
        if self.alphas == 1:
            return head + f"the sweep has one alpha ({self.best:g}): nothing to compare." + self._caveat()
        if self.best == 0.0:
            if self.against is None:
                return head + "alpha = 0 is the only alpha with every seed completed." + self._caveat()
            head += (f"best alpha = 0 (vanilla MeanFlow): the runner-up, alpha = {self.against:g}, "
                     f"has {m} higher by ")
        else:
            head += f"best alpha = {self.best:g}, {m} lower than at alpha = 0 by "
        size = fmt_pm(abs(d.mean), d.sem) if d.mean is not None else "-"
        seeds = f"{d.n} paired seed{'s' * (d.n != 1)}"
        share = ""
        if d.mean is not None and self.at_zero:
            pct = 100 * abs(d.mean) / self.at_zero
            share = (f"{pct:.0f}%" if pct >= 10 else f"{pct:#.2g}".rstrip(".") + "%" if pct >= 0.01
                     else "under 0.01%")  # 2 significant figures
            share = f"{share} of {m} at alpha = 0; "
        if d.sem is None:
            judged = f"{size} ({share}{seeds}: too few to tell from zero)"
        else:
            evaluation = f"; evaluation SE {self.eval_se:.2g}" if self.eval_se is not None else ""
            judged = (f"{size} ({share}mean ± SEM over {seeds}{evaluation}), "
                      + ("distinguishable from zero" if d.distinguishable else "not distinguishable from zero")
                      + f" ({_interval_text(d)})")
        return head + judged + "." + self._caveat()

    def _caveat(self) -> str:
        bad = {k: v for k, v in self.not_completed.items() if v}
        if not bad:
            return ""
        n = sum(bad.values())
        return (f" {n} cell{'s' * (n > 1)} did not complete (" + ", ".join(f"{v} {k}" for k, v in bad.items())
                + "); alphas missing a seed are not candidates.")


def quality_metric(setting: Setting) -> str:
    """The metric a setting is judged by: SW1 where recorded (2-D sets, Gaussian mixtures), else FID (the DiT)."""
    recorded = {m for r in setting.rows for c in r.completed() for m in ("sw1", "fid")
                if c.record["metrics"].get(m) is not None}
    return "sw1" if "sw1" in recorded or "fid" not in recorded else "fid"


def configured_margin(setting: Setting) -> float:
    """The setting's `verdict.margin` from its cells' resolved config.yaml (DEFAULT_MARGIN for records written
    before the key existed); ValueError when the cells disagree or the value is out of range."""
    shares = set()
    for cell in setting.cells():
        path = cell.path / "config.yaml"
        if path.exists() and (config := read_cell_config(path)) is not None:
            shares.add((config.get("verdict") or {}).get("margin", DEFAULT_MARGIN))
    if len(shares) > 1:
        raise ValueError(f"{setting.label}: its cells' config.yaml disagree on verdict.margin ({sorted(shares)})")
    return check_margin(shares.pop() if shares else DEFAULT_MARGIN)


def setting_answer(setting: Setting, metric: str, margin: float, look: int = 1, max_looks: int = 1) -> Answer | None:
    """`answers.decide` on the setting's completed cells (alphas of a constant grid; `margin` a share of alpha =
    0's mean metric), or None when there is no alpha = 0 with a value and another alpha to compare it with."""
    values = {r.alpha: v for r in setting.rows if r.grid_alpha is not None and (v := seed_values(r, metric))}
    if not values.get(0.0) or len(values) < 2:
        return None
    return decide(values, margin=margin_for(margin, values), look=look, max_looks=max_looks, metric=metric,
                  setting=setting.label)


def verdict(setting: Setting, metric: str | None = None, margin: float | None = None,
            looks: tuple[int, int] = (1, 1)) -> Verdict:
    """The final-step verdict from the records (`best_alpha`'s rule: lowest mean over alphas whose every seed
    completed), on `metric` (default: `quality_metric`), with the setting's answer at `margin` (a share of alpha
    = 0's mean metric; default: the cells' `verdict.margin`) and `looks` (look, max_looks: a race's rounds)."""
    metric = metric or quality_metric(setting)
    best = best_alpha(setting, metric)
    zero = _by_seed(setting, 0.0, metric)
    against = best
    if best == 0.0:
        others = [(r.stats[metric][0], r.alpha) for r in setting.rows
                  if r.complete and r.alpha != 0.0 and r.stats.get(metric, (None,))[0] is not None]
        against = min(others)[1] if others else None
    difference = paired_by_seed(_by_seed(setting, against, metric), zero) if against is not None else None
    counts = {k: sum(r.count(k) for r in setting.rows) for k in NOT_COMPLETED}
    zero_row = setting.row(0.0)
    at_zero = zero_row.stats.get(metric, (None,))[0] if zero_row else None
    measured = any(r.stats.get(metric, (None,))[0] is not None for r in setting.rows)
    scheduled = None
    if all(r.grid_alpha is None for r in setting.rows):  # a schedule's setting is its one row
        mean, sem = setting.rows[0].stats.get(metric, (None, None))
        scheduled = (mean, sem, setting.rows[0].count("completed"))
    answer = None if scheduled else setting_answer(
        setting, metric, configured_margin(setting) if margin is None else margin, *looks)
    eval_se = (paired_difference(setting.row(against), zero_row, metric)["eval_se"]
               if against is not None and zero_row is not None and setting.row(against) is not None else None)
    return Verdict(setting.label, metric, best, against, difference, len(setting.seeds), counts,
                   zero_row is not None, len(setting.rows), at_zero, measured, scheduled, answer, eval_se)


# ---------------------------------------------------------------------------------------------------------
# Matched steps: the verdict at every checkpoint of history.csv (the paper's Table 6, for every task)
# ---------------------------------------------------------------------------------------------------------

def checkpoint_key(histories: dict[float, list[tuple[int, dict[str, np.ndarray]]]]) -> str | None:
    """The first of `CHECKPOINT_KEYS` logged with a finite value in some history of the setting."""
    for key in CHECKPOINT_KEYS:
        if any(key in h and np.isfinite(h[key]).any() for hs in histories.values() for _, h in hs):
            return key
    return None


def values_at_steps(history: dict[str, np.ndarray], key: str) -> dict[int, float]:
    """`{step: value}` of `key` where the history logged it finitely."""
    ok = np.isfinite(history[key]) if key in history and "step" in history else np.zeros(0, bool)
    return dict(zip(history["step"][ok].astype(int).tolist(), history[key][ok].tolist())) if ok.any() else {}


@dataclass
class StepVerdict:
    """The verdict at one checkpoint; `against` and `difference` as in `Verdict` (runner-up when best is 0)."""

    step: int
    best: float
    against: float | None
    difference: Interval | None


def matched_steps(setting: Setting, histories: dict[float, list[tuple[int, dict[str, np.ndarray]]]],
                  key: str) -> list[StepVerdict]:
    """At each step where every completed seed of every alpha logged `key`: the alpha with the lowest mean over
    seeds (alphas with a seed that did not complete are not candidates, as in `best_alpha`; ties go to the
    smaller alpha) and its paired difference to alpha = 0 (the runner-up's when the best is alpha = 0).
    `histories[alpha]` lists (seed, history) of the completed cells."""
    values = {a: {seed: values_at_steps(h, key) for seed, h in hs} for a, hs in histories.items()}
    candidates = [r.alpha for r in setting.rows if r.complete and values.get(r.alpha)]
    steps = sorted(set.intersection(*(set(v) for a in candidates for v in values[a].values()))) if candidates else []
    out = []
    for step in steps:
        means = {a: float(np.mean([v[step] for v in values[a].values()])) for a in candidates}
        ranked = sorted(means, key=lambda a: (means[a], a))
        best = ranked[0]
        against = best if best != 0.0 else (ranked[1] if len(ranked) > 1 else None)
        diff = None
        if against is not None and 0.0 in values:
            zero = {s: v[step] for s, v in values[0.0].items() if step in v}
            diff = paired_by_seed({s: v[step] for s, v in values[against].items()}, zero)
        out.append(StepVerdict(step, best, against, diff))
    return out


def stability(verdicts: list[StepVerdict], fraction: float = 1 / 3) -> str:
    """One line: whether the best alpha is the same at every checkpoint of the last `fraction` of training."""
    if not verdicts:
        return "no checkpoints logged"
    last = verdicts[-1].step
    tail = [v for v in verdicts if v.step >= last * (1 - fraction)]
    span = f"steps {tail[0].step}-{last}" if len(tail) > 1 else f"step {last}"
    bests = [v.best for v in tail]
    if len(tail) < 2:
        return f"only one checkpoint ({span}) in the last third of training: stability cannot be judged"
    if len(set(bests)) == 1:
        return (f"stable over the last third of training: best alpha = {bests[0]:g} at all {len(tail)} "
                f"checkpoints ({span})")
    changes = ", ".join(f"{v.best:g} at {v.step}" for v in tail)
    return f"not stable over the last third of training ({span}): best alpha {changes}"


def setting_histories(setting: Setting, read) -> dict[float, list[tuple[int, dict[str, np.ndarray]]]]:
    """{alpha: [(seed, history)]} over the completed cells, read with `read(cell)` (`aggregate.read_history`)."""
    return {r.alpha: [(s, read(r.cells[s])) for s in r.seeds if r.status[s] == "completed"] for r in setting.rows}


def as_dict(v: Verdict) -> dict[str, Any]:
    """Plain values for tables and notebooks."""
    d = v.difference
    return {"setting": v.setting, "metric": v.metric, "answer": v.answer.answer if v.answer else None,
            "best alpha": v.best, "compared alpha": v.against,
            "difference": None if d is None else d.mean, "sem": None if d is None else d.sem,
            "n": 0 if d is None else d.n, "distinguishable (unadjusted)": bool(d and d.distinguishable),
            "answer sentence": v.answer.sentence() if v.answer else None, "sentence": v.sentence()}
