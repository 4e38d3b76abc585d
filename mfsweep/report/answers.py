"""One of four answers per setting, with its error rate stated (docs/method.md 7): whether some alpha beats
alpha = 0 (vanilla MeanFlow), whether alpha does not matter within a margin, whether no alpha helps though some
hurt, or that the seeds do not yet tell.

Every answer is read off one family of simultaneous intervals for the paired differences `metric(alpha) -
metric(0)` over all alphas of the setting (lower is better): paired t-intervals whose critical value is
Bonferroni-adjusted over the alphas and, for a race that looks after every round of seeds, over the looks by a
Lan-DeMets O'Brien-Fleming spending of the level. When every interval covers its true difference (probability
at least `level`), no answer is wrong; so the family-wise rate of a false `better`, `no_better` or `equivalent`
is at most 1 - `level` for a fixed grid and for a race alike (benchmarks/verdict_error_rates.py shows it).

    a = decide({0.0: {0: 0.061, 1: 0.060, ...}, 0.1: {...}, ...}, margin=0.0012, look=2, max_looks=4)
    a.answer, a.best_alpha, a.worse      # "unresolved", 0.8, (0.1, 0.2)
    a.sentence()                         # the report's one line
    a.to_dict()                          # the verdict.json entry

Computed here with scipy's t quantiles and normal cdf rather than with statsmodels or a confidence-sequence
library: the whole procedure is a t quantile at an adjusted level, which neither library offers as such
(statsmodels' `multipletests` adjusts p-values, not interval critical values, and confidence-sequence libraries
bound a single mean, not the paired family over alphas).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Mapping

import numpy as np
from scipy import stats

ANSWERS = ("better", "no_better", "equivalent", "unresolved")
# verdict.margin's default, as a share of alpha = 0's mean metric (docs/method.md 7: fixed before any race ran)
DEFAULT_MARGIN = 0.02
# The most seeds per alpha that `seeds_needed` searches; beyond it the difference is, in practice, unresolvable.
MAX_SEEDS_NEEDED = 100_000


def check_margin(share: float) -> float:
    """`verdict.margin`, a share of alpha = 0's mean metric: a number in (0, 1], else one line naming the key."""
    if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 < share <= 1:
        raise ValueError(f"verdict.margin must be a share of alpha = 0's mean metric in (0, 1], e.g. "
                         f"{DEFAULT_MARGIN}, got {share!r}")
    return float(share)


def margin_for(share: float, values: Mapping[float, Mapping[int, float]]) -> float:
    """The equivalence margin in the metric's units: `share` (verdict.margin) of alpha = 0's mean metric."""
    zero = list(values.get(0.0, {}).values())
    if not zero:
        raise ValueError("decide: values has no alpha = 0.0 to compare with")
    return check_margin(share) * abs(float(np.mean(zero)))


@lru_cache(maxsize=256)
def spent(look: int, max_looks: int, level: float = 0.95) -> float:
    """The error probability spent at `look` of `max_looks` equally spaced looks: the increment of the
    Lan-DeMets O'Brien-Fleming spending function `f(u) = 2 - 2 Phi(z_{1 - a/2} / sqrt(u))` (a = 1 - level)
    between u = (look - 1)/max_looks and look/max_looks. The increments sum to 1 - level; one look spends all."""
    if not 1 <= look <= max_looks:
        raise ValueError(f"look must be in 1..max_looks ({max_looks}), got {look}")
    a = 1 - level
    z = stats.norm.isf(a / 2)

    def f(u: float) -> float:
        return 0.0 if u <= 0 else float(2 * stats.norm.sf(z / np.sqrt(u)))

    return f(look / max_looks) - f((look - 1) / max_looks)


@lru_cache(maxsize=4096)  # a pure function of a few small integers, asked for on every look of every race
def critical(n: int, alphas: int, look: int = 1, max_looks: int = 1, level: float = 0.95) -> float:
    """The simultaneous interval's half-width in standard errors for `n` paired seeds: the two-sided t quantile
    with n - 1 degrees of freedom at the error `spent` at `look`, shared out equally over `alphas` comparisons
    (Bonferroni). A fixed grid with one alpha: the ordinary paired t-interval's quantile."""
    if n < 2:
        return float("inf")
    return float(stats.t.isf(spent(look, max_looks, level) / (2 * alphas), n - 1))


@dataclass(frozen=True)
class Comparison:
    """One alpha against alpha = 0 (or against the best, for `worse`): paired differences over `n` seeds."""

    alpha: float
    n: int
    mean: float
    sd: float | None                        # standard deviation of the per-seed differences (None: n < 2)
    simultaneous: tuple[float, float] | None  # family-wise interval (None: n < 2)
    unadjusted: tuple[float, float] | None    # the plain paired t-interval at `level`, for the paper's comparison
    look: int                               # the look whose spent error the simultaneous interval uses


@dataclass(frozen=True)
class Answer:
    """A setting's answer (one of ANSWERS; precedence better > equivalent > no_better > unresolved, docs/method.md
    7). `best_alpha`: the lowest mean paired difference to alpha = 0, None when alpha = 0 is lowest; `worse`:
    alphas whose simultaneous interval against the best excludes zero (a race gives them no more seeds; never
    0.0); `seeds`: seeds per alpha; `seeds_needed`: when unresolved, the seeds per alpha at which a fixed grid
    with the observed means and spreads would resolve (a plug-in estimate, about even odds), None when
    resolved or when no seed count up to MAX_SEEDS_NEEDED would."""

    answer: str
    best_alpha: float | None
    worse: tuple[float, ...]
    seeds: dict[float, int]
    seeds_needed: int | None
    comparisons: tuple[Comparison, ...]       # every alpha other than 0, in increasing alpha
    margin: float
    metric: str = "sw1"
    setting: str = ""
    look: int = 1
    max_looks: int = 1
    level: float = 0.95
    at_zero: float | None = None             # mean metric at alpha = 0, to state differences relative to it

    @property
    def rounds(self) -> int:
        """Rounds of seeds behind the answer: the race's look (1 for a fixed grid)."""
        return self.look

    def comparison(self, alpha: float) -> Comparison:
        return next(c for c in self.comparisons if c.alpha == alpha)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values: the setting's entry of verdict.json."""
        return {
            "setting": self.setting, "metric": self.metric, "answer": self.answer, "best_alpha": self.best_alpha,
            "worse": list(self.worse), "seeds": [{"alpha": a, "seeds": n} for a, n in sorted(self.seeds.items())],
            "rounds": self.rounds, "look": self.look, "max_looks": self.max_looks, "level": self.level,
            "margin": self.margin, "at_zero": self.at_zero, "seeds_needed": self.seeds_needed,
            "intervals": [{"alpha": c.alpha, "seeds": c.n, "mean_difference": c.mean if c.n else None, "sd": c.sd,
                           "simultaneous": list(c.simultaneous) if c.simultaneous else None,
                           "unadjusted": list(c.unadjusted) if c.unadjusted else None}
                          for c in self.comparisons],
            "sentence": self.sentence(),
        }

    def sentence(self) -> str:
        """The one-line verdict of the report and notebook."""
        m = self.metric.upper()
        pct = f"{self.level:.0%}"
        head = f"{self.setting}: " if self.setting else ""
        n0, fewest = self.seeds.get(0.0, 0), min(self.seeds.values())
        seeds = f"{n0} seed{'s' * (n0 != 1)} per alpha" if fewest == n0 else \
            f"{n0} seed{'s' * (n0 != 1)} at alpha = 0, {fewest} at the fewest"
        if self.rounds > 1 or self.max_looks > 1:
            seeds += f", round {self.look} of at most {self.max_looks}"
        margin = f"±{_num(self.margin)}"
        if self.answer == "better":
            c = self.comparison(self.best_alpha)
            pct_zero = abs(100 * c.mean / self.at_zero) if self.at_zero else None
            share = "" if pct_zero is None else f" ({pct_zero:.2g}% of {m} at alpha = 0)" if pct_zero < 100 \
                else f" ({pct_zero:.0f}% of {m} at alpha = 0)"
            small = (f"; a gain smaller than the margin {margin}" if c.simultaneous[0] > -self.margin else "")
            return (head + f"better: alpha = {self.best_alpha:g} lowers {m} by {_num(-c.mean)}{share}, simultaneous "
                    f"{pct} interval {_iv(c.simultaneous)} over {len(self.comparisons)} alphas (unadjusted paired t "
                    f"{_iv(c.unadjusted)}){small}; {seeds}.")
        if self.answer == "equivalent":
            widest = max(max(abs(c.simultaneous[0]), abs(c.simultaneous[1])) for c in self.comparisons)
            return (head + f"equivalent (flat): every alpha within {margin} of alpha = 0 ({pct} simultaneous; "
                    f"the widest bound {_num(widest)}); {seeds}.")
        if self.answer == "no_better":
            worst = max(self.comparisons, key=lambda c: c.simultaneous[0])
            return (head + f"no_better: no alpha lowers {m} by more than the margin {margin}, and alpha = "
                    f"{worst.alpha:g} is worse by {_num(worst.mean)} (simultaneous {pct} interval "
                    f"{_iv(worst.simultaneous)}); {seeds}.")
        few = [c.alpha for c in self.comparisons if c.simultaneous is None]
        need = (f"too few paired seeds to judge alpha = {', '.join(f'{a:g}' for a in few)}" if few else
                f"a fixed grid would need about {self.seeds_needed} seeds per alpha at these spreads"
                if self.seeds_needed else "no affordable seed count would resolve it at these spreads")
        best = "alpha = 0" if self.best_alpha is None else f"alpha = {self.best_alpha:g}"
        if self.best_alpha is not None and (c := self.comparison(self.best_alpha)).simultaneous:
            best += f" (simultaneous {pct} interval {_iv(c.simultaneous)}, unadjusted {_iv(c.unadjusted)})"
        return head + f"unresolved: lowest mean {m} at {best}, not resolved against margin {margin}; {need}; {seeds}."


def _num(x: float) -> str:
    return f"{x:.2g}" if abs(x) >= 1e-12 else "0"


def _iv(iv: tuple[float, float] | None) -> str:
    return "-" if iv is None else f"[{iv[0]:+.2g}, {iv[1]:+.2g}]"


def _paired(a: Mapping[int, float], b: Mapping[int, float]) -> np.ndarray:
    return np.array([a[s] - b[s] for s in sorted(a.keys() & b.keys())], dtype=float)


def _data_look(n: int, n_zero: int, look: int, max_looks: int) -> int:
    """The look whose spent error an alpha's interval uses: the look at which its seeds were complete. A raced
    alpha dropped after round j keeps its first j rounds' seeds, and its interval keeps look j's critical value,
    so that each alpha's interval on each round's data is one fixed event of the union bound (docs/method.md 7).
    Inferred from its seed count against alpha = 0's (alpha = 0 always gets every round's seeds), rounded down:
    exact for equal rounds, and otherwise an earlier look, whose O'Brien-Fleming critical value is the larger."""
    if n_zero <= 0 or n >= n_zero:
        return look
    return int(min(look, max(1, (look * n) // n_zero)))


def decide(values: Mapping[float, Mapping[int, float]], *, margin: float, look: int = 1, max_looks: int = 1,
           level: float = 0.95, metric: str = "sw1", setting: str = "") -> Answer:
    """values[alpha][seed]: the metric (lower is better), alpha 0.0 required; pairs by seed. margin: the
    equivalence margin in the metric's units (the caller turns the configured default into this). look of
    max_looks: this is look k of at most K planned looks (a fixed grid is 1 of 1); the repeated-looks
    correction uses them. Deterministic: the same values give the same Answer (no random draws at all)."""
    if 0.0 not in values:
        raise ValueError("decide: values has no alpha = 0.0 to compare with")
    others = sorted(float(a) for a in values if a != 0.0)
    if not others:
        raise ValueError("decide: values has only alpha = 0.0; nothing to compare")
    if not margin > 0 or not np.isfinite(margin):
        raise ValueError(f"decide: margin must be a positive number (verdict.margin), got {margin}")
    if not 0 < level < 1:
        raise ValueError(f"decide: level must be in (0, 1), got {level}")
    spent(look, max_looks, level)  # checks look against max_looks
    k = len(others)
    zero = values[0.0]
    n_zero = len(zero)
    comps = []
    for a in others:
        d = _paired(values[a], zero)
        n = len(d)
        mean = float(d.mean()) if n else float("nan")
        j = _data_look(n, n_zero, look, max_looks)
        if n < 2:
            comps.append(Comparison(a, n, mean, None, None, None, j))
            continue
        sd = float(d.std(ddof=1))
        se = sd / np.sqrt(n)
        c = critical(n, k, j, max_looks, level)
        u = critical(n, 1, 1, 1, level)
        comps.append(Comparison(a, n, mean, sd, (mean - c * se, mean + c * se), (mean - u * se, mean + u * se), j))
    judged = [c for c in comps if c.n >= 1]
    best = min(judged, key=lambda c: (c.mean, c.alpha)) if judged else None
    best_alpha = best.alpha if best is not None and best.mean < 0 else None
    worse = tuple(_worse(values, comps, best_alpha, k, n_zero, look, max_looks, level))
    answer = _answer(comps, best, margin)
    seeds = {float(a): len(v) for a, v in sorted(values.items())}
    needed = None if answer != "unresolved" else _seeds_needed(comps, margin, k, level)
    at_zero = float(np.mean(list(zero.values()))) if n_zero else None
    return Answer(answer, best_alpha, worse, seeds, needed, tuple(comps), float(margin), metric, setting, look,
                  max_looks, level, at_zero)


def _answer(comps: list[Comparison], best: Comparison | None, margin: float) -> str:
    """The four answers' precedence (docs/method.md 7): a distinguishable gain first, then flatness, then 'no
    alpha helps though some hurt'; any alpha without an interval leaves the setting unresolved unless the best
    alpha's gain is already distinguishable."""
    if best is not None and best.mean < 0 and best.simultaneous and best.simultaneous[1] < 0:
        return "better"
    if any(c.simultaneous is None for c in comps):
        return "unresolved"
    if all(-margin < c.simultaneous[0] and c.simultaneous[1] < margin for c in comps):
        return "equivalent"
    if all(c.simultaneous[0] > -margin for c in comps) and any(c.simultaneous[0] > 0 for c in comps):
        return "no_better"
    return "unresolved"


def _worse(values, comps, best_alpha, k, n_zero, look, max_looks, level):
    """Alphas (never 0) whose simultaneous interval against the best alpha (alpha = 0 when it is best) lies
    above zero, with the same critical values as the intervals against alpha = 0."""
    ref = 0.0 if best_alpha is None else best_alpha
    out = []
    for c in comps:
        if c.alpha == ref:
            continue
        d = _paired(values[c.alpha], values[ref])
        if len(d) < 2:
            continue
        low = d.mean() - critical(len(d), k, _data_look(len(d), n_zero, look, max_looks), max_looks, level) \
            * d.std(ddof=1) / np.sqrt(len(d))
        if low > 0:
            out.append(c.alpha)
    return out


def _seeds_needed(comps: list[Comparison], margin: float, k: int, level: float) -> int | None:
    """The fewest seeds per alpha at which a fixed grid (one look) would give some answer other than
    unresolved if the observed mean differences and spreads were the truth. Each answer's condition only gets
    easier as the intervals narrow with n, so a bisection over n finds the first n that resolves."""
    if any(c.sd is None for c in comps):
        return None
    means = np.array([c.mean for c in comps])
    sds = np.array([c.sd for c in comps])
    b = int(np.argmin(means))

    def resolves(n: int) -> bool:
        half = critical(n, k, 1, 1, level) * sds / np.sqrt(n)
        low, high = means - half, means + half
        return bool((means[b] < 0 and high[b] < 0) or ((low > -margin) & (high < margin)).all()
                    or ((low > -margin).all() and (low > 0).any()))

    lo, hi = 2, MAX_SEEDS_NEEDED
    if not resolves(hi):
        return None
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if resolves(mid) else (mid + 1, hi)
    return lo
