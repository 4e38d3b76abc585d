"""Error rates of a method's comparison with the constant-alpha grid beside it (docs/method.md 7, "Methods
against the grid"), by simulation: the plain t-interval against the best constant alpha, as the paper would
read it, against the report's simultaneous family over all the grid's alphas.

    python benchmarks/method_comparison_error_rates.py [--sweeps 3000 --seed 0]

Per-seed SW1 of the grid's 11 alphas is drawn as in benchmarks/verdict_error_rates.py (the toy grid's curves;
noise smooth in alpha as fitted there, or with the evaluation noise independent cell by cell). The method is one more column of the same Gaussian process, placed at
the curve's best alpha, so it shares the seed's noise as a schedule run on the same seeds does, and its true
mean is the best constant's plus `gain` (0: as good as the best constant alpha; negative: better than every one).

A claim is false when the truth contradicts it. The plain rule claims "lower" or "higher" than the best
constant alpha (picked by mean from the same seeds) when its 95% paired t-interval excludes zero; the
simultaneous rule claims "lower than every constant alpha" or "higher than alpha = a" (`compare.against_constants`).
Power: the share of sweeps with a true claim that the method is lower than every constant alpha (gain < 0).
"""
from __future__ import annotations

import argparse
import time

import numpy as np
from scipy import stats

from mfsweep.report.compare import against_constants, simultaneous
from verdict_error_rates import ALPHAS, CURVES, draw


def sweep(x: np.ndarray, method: np.ndarray) -> tuple[tuple[str, float | None], tuple[str, float]]:
    """(simultaneous call, (plain call, the best constant alpha)) for one sweep: x (seeds, alphas), method (seeds,)."""
    n = len(method)
    grid = {float(a): dict(enumerate(x[:, i].tolist())) for i, a in enumerate(ALPHAS)}
    family = simultaneous(dict(enumerate(method.tolist())), grid)
    best = int(np.argmin(x.mean(0)))
    d = method - x[:, best]
    t = d.mean() / (d.std(ddof=1) / np.sqrt(n))
    plain = "neither" if abs(t) <= stats.t.isf(0.025, n - 1) else ("lower" if t < 0 else "higher")
    return against_constants(family), (plain, float(ALPHAS[best]))


def rates(curve, gain: float, seeds: int, sweeps: int, rng: np.random.Generator,
          noise: str = "smooth") -> dict[str, tuple[float, float]]:
    """(false-claim rate, power) of the plain and the simultaneous rule on `sweeps` simulated sweeps."""
    mu = np.asarray(curve, float)
    at = float(ALPHAS[int(np.argmin(mu))])
    alphas = np.append(ALPHAS, at)  # the method: one more column of the process, at the best alpha
    x = draw(rng, sweeps, seeds, np.append(mu, mu.min() + gain), alphas, noise)
    method_mu = mu.min() + gain
    out = {"plain": [0, 0], "simultaneous": [0, 0]}
    for s in range(sweeps):
        (call, alpha), (plain, best) = sweep(x[s, :, :-1], x[s, :, -1])
        truth_best = method_mu - mu[list(ALPHAS).index(best)]  # the method minus the picked constant, truly
        false_plain = (plain == "lower" and not truth_best < 0) or (plain == "higher" and not truth_best > 0)
        false_sim = (call == "lower" and not (method_mu < mu).all()) or (
            call == "higher" and not method_mu > mu[list(ALPHAS).index(alpha)])
        out["plain"][0] += false_plain
        out["simultaneous"][0] += false_sim
        out["plain"][1] += plain == "lower" and (method_mu < mu).all()
        out["simultaneous"][1] += call == "lower" and (method_mu < mu).all()
    return {k: (f / sweeps, p / sweeps) for k, (f, p) in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweeps", type=int, default=3000, help="simulated sweeps per curve and seed count")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    start = time.perf_counter()
    print(f"{args.sweeps} simulated sweeps per cell; Monte Carlo SE at 5%: "
          f"{100 * np.sqrt(0.05 * 0.95 / args.sweeps):.2f}%")
    print("| noise | curve | gain (method - best constant) | seeds | plain vs best: false % / power % | "
          "simultaneous: false % / power % |")
    print("| --- | --- | --- | --- | --- | --- |")
    for m, noise in enumerate(("smooth", "independent")):
        for i, (name, curve) in enumerate(CURVES.items()):
            for j, gain in enumerate((0.0, -0.05 * min(curve))):
                for k, seeds in enumerate((3, 6, 12)):
                    r = rates(curve, gain, seeds, args.sweeps, np.random.default_rng([args.seed, m, i, j, k]), noise)
                    cells = [f"{100 * r[p][0]:.1f} / {100 * r[p][1]:.1f}" for p in ("plain", "simultaneous")]
                    print(f"| {noise} | {name} | {gain:+.4f} | {seeds} | " + " | ".join(cells) + " |")
    print(f"\n{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
