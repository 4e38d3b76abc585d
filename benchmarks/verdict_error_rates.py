"""Error rates of the verdict, by simulation (docs/method.md 7): how often each procedure makes a false claim,
how often it finds the true answer, and how many seeds per alpha it spends.

    python benchmarks/verdict_error_rates.py [--sweeps 3000 --seed 0]

Per-seed SW1 of the 11 alphas of a setting is drawn as `mu(alpha) + smooth(alpha) + rough(alpha)` per seed,
with the noise sizes measured on eight_gaussians (issue 21's protocol, alpha 0.8 vs 0): the paired 0.8-vs-0
difference has a training part of SD 0.0018 and an evaluation part of SD 0.0035, both smooth in alpha (the
cells of a seed share every random draw, so neighbouring alphas' noise nearly cancels: the 3-seed mean curves of
docs/toy_grid.md have second differences that bound the rough, cell-by-cell part at SD 0.00026), modelled as a
Gaussian process in alpha (squared-exponential, length scale 0.5) scaled to SD sqrt(0.0018^2 + 0.0035^2) at
alpha 0.8 against 0, plus independent cell noise of SD 0.00026. The true curves `mu` are the toy grid's mean
SW1 by alpha (docs/toy_grid.md) for eight_gaussians, pinwheel and two_spirals, and a flat curve (no alpha
differs: where picking the best of 11 misleads most).

Procedures: the old rule (best alpha by mean against alpha 0 with an unadjusted 95% paired t-interval, the
runner-up when 0 is best; a claim when it excludes zero), the fixed-grid verdict `decide` at 6 and 12 seeds
(one look), and the race: rounds of 3 seeds to at most 12 (4 looks), `decide` after each round, alphas in
`worse` get no more seeds, the setting stops when resolved. The margin is `verdict.margin`'s default, 2% of
alpha 0's mean metric.

A claim is false when it contradicts the true curve: `better` for an alpha whose true difference is not below
zero, `equivalent` when some alpha is not truly within the margin, `no_better` when some alpha truly gains more
than the margin or none is truly worse (the old rule: a difference whose sign is wrong or whose truth is zero).
Power: the share of sweeps ending in a true answer other than unresolved.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
from scipy import stats

from mfsweep.report.answers import decide

ALPHAS = np.round(np.arange(11) * 0.1, 1)
MARGIN = 0.02  # verdict.margin's default: a share of alpha 0's mean metric
TRAIN_SD, EVAL_SD, ROUGH_SD, LENGTH = 0.0018, 0.0035, 0.00026, 0.5
# mean SW1 by alpha over 3 seeds, docs/toy_grid.md
CURVES = {
    "flat": [0.0627] * 11,
    "eight_gaussians": [0.0627, 0.0614, 0.0602, 0.0593, 0.0584, 0.0580, 0.0576, 0.0568, 0.0565, 0.0568, 0.0568],
    "pinwheel": [0.0547, 0.0545, 0.0544, 0.0545, 0.0546, 0.0549, 0.0552, 0.0557, 0.0562, 0.0569, 0.0578],
    "two_spirals": [0.0573, 0.0575, 0.0577, 0.0579, 0.0582, 0.0586, 0.0590, 0.0594, 0.0598, 0.0603, 0.0608],
}


def draw(rng: np.random.Generator, sweeps: int, seeds: int, curve, alphas=ALPHAS, noise: str = "smooth",
         length: float = LENGTH) -> np.ndarray:
    """Per-seed metric, shape (sweeps, seeds, alphas): the true curve plus the smooth and the rough noise.
    noise="smooth": the fit to the toy grid (evaluation noise smooth in alpha, like training's);
    noise="independent": issue 22's model, the evaluation noise independent cell by cell (SD 0.0035 / sqrt 2
    per cell, so that the paired difference's evaluation part has SD 0.0035)."""
    a = np.asarray(alphas, float)
    k = np.exp(-0.5 * (a[:, None] - a[None, :]) ** 2 / length ** 2)
    chol = np.linalg.cholesky(k + 1e-9 * np.eye(len(a)))
    smooth = rng.standard_normal((sweeps, seeds, len(a))) @ chol.T
    at08 = np.sqrt(2 - 2 * np.exp(-0.5 * 0.8 ** 2 / length ** 2))  # SD of smooth(0.8) - smooth(0) per unit
    smooth *= (np.hypot(TRAIN_SD, EVAL_SD) if noise == "smooth" else TRAIN_SD) / at08
    rough = ROUGH_SD if noise == "smooth" else EVAL_SD / np.sqrt(2)
    return np.asarray(curve, float) + smooth + rough * rng.standard_normal((sweeps, seeds, len(a)))


def truth(curve, margin: float) -> dict[str, object]:
    """The true differences to alpha 0 and which resolved answers are true."""
    d = np.asarray(curve, float)[1:] - curve[0]
    return {"delta": d, "equivalent": bool((np.abs(d) < margin).all()),
            "no_better": bool((d > -margin).all() and (d > 0).any())}


def false_claim(answer, true: dict, alphas=ALPHAS) -> bool:
    if answer.answer == "unresolved":
        return False
    if answer.answer == "better":
        return not true["delta"][list(alphas[1:]).index(answer.best_alpha)] < 0
    return not true[answer.answer]


def as_values(x: np.ndarray, alphas=ALPHAS) -> dict[float, dict[int, float]]:
    """One sweep's (seeds, alphas) array as decide's values."""
    return {float(a): dict(enumerate(x[:, i].tolist())) for i, a in enumerate(alphas)}


def old_rule(x: np.ndarray, true: dict) -> tuple[bool, bool]:
    """(false claim, true claim) of the old best-vs-0 unadjusted t-interval, for one sweep (seeds, alphas)."""
    n = x.shape[0]
    order = np.argsort(x.mean(0), kind="stable")
    against = order[1] if order[0] == 0 else order[0]
    d = x[:, against] - x[:, 0]
    t = d.mean() / (d.std(ddof=1) / np.sqrt(n))
    if abs(t) <= stats.t.isf(0.025, n - 1):
        return False, False
    right = np.sign(true["delta"][against - 1]) == np.sign(t)
    return not right, bool(right)


def race(x: np.ndarray, margin: float, round_seeds: int = 3, alphas=ALPHAS):
    """The race on one sweep's pre-drawn seeds (max_seeds, alphas): the final Answer and the seeds per alpha.
    An alpha in `worse` keeps the seeds it has; alpha 0 is never dropped (decide never lists it)."""
    looks = x.shape[0] // round_seeds
    seeds = np.zeros(len(alphas), int)
    dropped: set[float] = set()
    for look in range(1, looks + 1):
        for i, a in enumerate(alphas):
            if float(a) not in dropped:
                seeds[i] = look * round_seeds
        values = {float(a): dict(enumerate(x[:seeds[i], i].tolist())) for i, a in enumerate(alphas)}
        answer = decide(values, margin=margin, look=look, max_looks=looks)
        if answer.answer != "unresolved":
            break
        dropped |= set(answer.worse)
    return answer, seeds


def rates(procedure: str, curve, sweeps: int, rng: np.random.Generator, alphas=ALPHAS,
          noise: str = "smooth") -> tuple[float, float, float]:
    """(false-claim rate, power, mean seeds per alpha) of `procedure` on `sweeps` simulated sweeps of `curve`:
    "old 3", "old 6" (the old rule at that many seeds), "fixed 6", "fixed 12", "race 12" (rounds of 3)."""
    kind, n = procedure.split()
    n = int(n)
    x = draw(rng, sweeps, n, curve, alphas, noise)
    margin = MARGIN * curve[0]
    true = truth(curve, margin)
    false = right = 0
    spent = 0.0
    for s in range(sweeps):
        if kind == "old":
            f, r = old_rule(x[s], true)
            spent += n
        else:
            if kind == "fixed":
                answer = decide(as_values(x[s], alphas), margin=margin)
                spent += n
            else:
                answer, seeds = race(x[s], margin, alphas=alphas)
                spent += seeds.mean()
            f = false_claim(answer, true, alphas)
            r = answer.answer != "unresolved" and not f
        false += f
        right += r
    return false / sweeps, right / sweeps, spent / sweeps


PROCEDURES = {"old 3": "old uncorrected best-vs-0, 3 seeds", "old 6": "old uncorrected best-vs-0, 6 seeds",
              "fixed 6": "fixed-grid verdict, 6 seeds", "fixed 12": "fixed-grid verdict, 12 seeds",
              "race 12": "race, rounds of 3 to 12 seeds"}


def report(noise: str, table: dict, sweeps: int) -> None:
    se = np.sqrt(0.05 * 0.95 / sweeps)
    print(f"noise {noise}: {sweeps} simulated sweeps per procedure and true curve; Monte Carlo SE at 5%: "
          f"{100 * se:.2f}%")
    print("false claims: the largest over the curves (no alpha differs, eight_gaussians, pinwheel, two_spirals);"
          " power and mean seeds (per alpha): eight_gaussians")
    for p, name in PROCEDURES.items():
        worst = max(CURVES, key=lambda c: table[p, c][0])
        f, power, seeds = table[p, worst][0], *table[p, "eight_gaussians"][1:]
        print(f"{name}: false claims {100 * f:.1f}%, power {100 * power:.1f}%, mean seeds {seeds:.1f}"
              f"  (false claims largest on {worst})")
    print("per curve: false claims % / power % / mean seeds per alpha")
    print("| procedure | " + " | ".join(CURVES) + " |")
    print("| --- |" + " --- |" * len(CURVES))
    for p, name in PROCEDURES.items():
        cells = [f"{100 * table[p, c][0]:.1f} / {100 * table[p, c][1]:.1f} / {table[p, c][2]:.1f}" for c in CURVES]
        print(f"| {name} | " + " | ".join(cells) + " |")
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweeps", type=int, default=3000, help="simulated sweeps per procedure and curve")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    start = time.perf_counter()
    for m, noise in enumerate(("smooth", "independent")):
        report(noise, {(p, c): rates(p, curve, args.sweeps, np.random.default_rng([args.seed, m, i, j]), noise=noise)
                       for i, p in enumerate(PROCEDURES) for j, (c, curve) in enumerate(CURVES.items())}, args.sweeps)
    print(f"\n{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
