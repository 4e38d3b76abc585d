"""Where the quantile SW estimator's evaluation noise comes from (docs/evaluation.md, "The noise by source").

    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/evaluation_sources.py [SWEEP_DIR]      # both parts
    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/evaluation_sources.py --skip-sources --stand-ins

Part 1, by source: a trained sweep's cells (default /work/scratch/eval/e8, the eight_gaussians sweep of
docs/evaluation.md: alpha 0 and 0.8, seeds 0-5) are rebuilt from their jobs' checkpoints
(`reevaluate.restore_job`) and evaluated at today's default settings (those of `mfsweep-evaluate --defaults`)
with ONE source of the evaluation draw varied over `--draws` draws while the other two stay at draw 0: the
generated noise (`VectorTask.generate`), the reference pools (`split_pools`), the directions (`split_directions`).
The two alphas of a seed share every draw, as in the records. Printed per source: the within-seed SD of the
paired SW1 difference (root mean square over seeds of its SD over the draws) and of one cell's SW1; beside them
the three sources varied at once, from the sweep's records `evaluations/<--records><draw>.json` where they
exist (`mfsweep-evaluate SWEEP_DIR --defaults eval.draw=D --name qD`), whose draw 0 the regenerated values must
reproduce.

Part 2, directions in d > 2: two cells trained on the `dgmm` mixture (conf/dataset/dgmm.yaml) at each of
`--dims`, seed 0 at alpha 0 (a) and 0.8 (b), from `--dgmm-sweep` (default /work/runs/dgmm_grid, the run of
sweeps/dgmm_grid.yaml in docs/dgmm.md), or with `--stand-ins` two stand-ins needing no sweep: the mixture with
its means moved by 0.3 N(0, I) and scale 0.3 (a), and the same moved by 0.05 N(0, I) more with scale 0.33 (b),
drawn from one generator so that they share components and noise like two alphas of a seed. One split at the
default sizes (10,000 points of each against a 100,000-point pool from the mixture's exact sampler) is held
fixed while the split's L = 64 directions are redrawn `--direction-draws` times from the project's stacked
orthogonal blocks and from a randomised QMC design (scrambled Sobol points through the normal quantile,
normalised). Independent Gaussian directions need no draws of their own: the mean of L independent uniform
directions has variance (variance over directions) / L exactly, estimated from all the orthogonal draws'
columns, each uniform on the sphere. For context, the points redrawn with the directions fixed. SDs are scaled
to a 10-split record (one split's SD / sqrt(10): each split has its own directions); the variance ratio is
independent / design, with a 95% interval from the design's chi-square (the independent variance, from 64 times
as many values, taken as known).
"""
from __future__ import annotations

import argparse
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

N_SPLIT, POOL_RATIO, N_SPLITS, L = 10_000, 10, 10, 64  # part 2: one split at the default evaluation's sizes
ORTHOGONAL = "orthogonal blocks (the project's)"
SOURCES = ("generated points", "reference pool", "directions")


def split_sw1(points: np.ndarray, dirs: list[np.ndarray], quantiles: list[np.ndarray],
              parts: list[np.ndarray]) -> np.ndarray:
    """The record's SW1 (mean over the splits) of each of the (E, N, d) points, against reduced pools."""
    from mfsweep.metrics.sliced import sw_to_quantiles

    return np.mean([sw_to_quantiles(points[:, p], d, q)[0] for p, d, q in zip(parts, dirs, quantiles)], axis=0)


def one_seed(task, ev, seed: int, generated: list[np.ndarray]) -> dict[str, np.ndarray]:
    """Per source, the record's SW1 of a seed's members (E, draws) with that source at draws 0, 1, ... (one
    per array of `generated`, the members' points (E, N, d) at that draw) and the other two at draw 0."""
    from mfsweep.metrics.sliced import reference_quantiles

    parts = np.array_split(np.arange(ev.n_samples), ev.n_splits)  # as VectorTask.evaluate splits
    sizes = [len(p) for p in parts]
    dirs0 = task.split_directions(seed, ev.n_splits, ev.n_projections, ev.projection_seed, 0)
    pools0 = task.split_pools(seed, sizes, ev.reference_ratio, 0)
    q0 = [reference_quantiles(p, d, n) for p, d, n in zip(pools0, dirs0, sizes)]
    values = {source: [split_sw1(generated[0], dirs0, q0, parts)] for source in SOURCES}  # draw 0: one evaluation
    for d in range(1, len(generated)):
        values["generated points"].append(split_sw1(generated[d], dirs0, q0, parts))
        pools = task.split_pools(seed, sizes, ev.reference_ratio, d)
        q = [reference_quantiles(p, r, n) for p, r, n in zip(pools, dirs0, sizes)]
        values["reference pool"].append(split_sw1(generated[0], dirs0, q, parts))
        dirs = task.split_directions(seed, ev.n_splits, ev.n_projections, ev.projection_seed, d)
        q = [reference_quantiles(p, r, n) for p, r, n in zip(pools0, dirs, sizes)]
        values["directions"].append(split_sw1(generated[0], dirs, q, parts))
    return {source: np.stack(v, axis=1) for source, v in values.items()}


def by_source(sweep_dir: Path, pair: tuple[float, float], draws: int, records: str) -> None:
    from omegaconf import OmegaConf

    from mfsweep.config import CONF_DIR
    from mfsweep.sweep.reevaluate import jobs, read_evaluation, restore_job

    defaults = OmegaConf.load(CONF_DIR / "config.yaml").eval  # what `mfsweep-evaluate --defaults` starts from
    sw1: dict[str, dict[tuple[int, float], np.ndarray]] = defaultdict(dict)  # source -> (seed, alpha) -> by draw
    cells = {}
    for ckpt, job_cells in jobs(sweep_dir):
        task, cfg, recs = restore_job(ckpt, job_cells, defaults=defaults)
        ev = cfg.eval
        members = {i: (r["seed"], r["alpha"]) for i, r in enumerate(recs) if r["alpha"] in pair}
        if not members:
            continue
        cells |= {members[i]: job_cells[i] for i in members}
        generated = [task.generate(ev.n_samples, ev.n_steps, draw=g).numpy() for g in range(draws)]
        for seed in sorted({s for s, _ in members.values()}):
            idx = [i for i in members if members[i][0] == seed]
            for source, values in one_seed(task, ev, seed, [g[idx] for g in generated]).items():
                for i, v in zip(idx, values):
                    sw1[source][members[i]] = v
    seeds = sorted({s for s, a in cells if (s, pair[0]) in cells and (s, pair[1]) in cells})
    try:
        sw1["all three (records)"] = {k: np.array([read_evaluation(c, f"{records}{d}")["metrics"]["sw1"]
                                                   for d in range(draws)]) for k, c in cells.items()}
        off = max(abs(sw1["all three (records)"][k][0] - sw1["generated points"][k][0]) for k in cells)
        print(f"draw 0 regenerated vs the records `{records}0`: largest |SW1 difference| {off:.1e}")
    except ValueError as exc:
        print(f"no total from the records: {exc}")
    print(f"\n{sweep_dir}: SW1 of alpha {pair[0]:g} - alpha {pair[1]:g}, seeds {seeds}, {draws} draws; "
          f"{ev.n_samples:,} points, pool {ev.reference_ratio}x, {ev.n_projections} directions, {ev.n_splits} splits\n")
    print("| source varied (others at draw 0) | within-seed SD, paired difference | share of the three's variance "
          "| within-seed SD, one cell's SW1 |")
    print("| --- | ---: | ---: | ---: |")
    variances = {}
    for source, values in sw1.items():
        diff = np.array([values[(s, pair[0])] - values[(s, pair[1])] for s in seeds])
        one = np.array([values[k] for k in cells])
        variances[source] = diff.var(axis=1, ddof=1).mean(), one.var(axis=1, ddof=1).mean()
    summed = tuple(np.sum([variances[s] for s in SOURCES], axis=0))
    variances = {s: variances[s] for s in SOURCES} | {"the three, variances summed": summed} | variances
    for source, (diff, one) in variances.items():
        share = f"{100 * diff / summed[0]:.0f}%" if source in SOURCES else ""
        print(f"| {source} | {np.sqrt(diff):.5f} | {share} | {np.sqrt(one):.5f} |")
    diff0 = [sw1["generated points"][(s, pair[0])][0] - sw1["generated points"][(s, pair[1])][0] for s in seeds]
    print(f"\nmean paired difference at draw 0 {np.mean(diff0):+.4f}, SD over seeds {np.std(diff0, ddof=1):.4f}")


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=0)


def _sobol(dim: int, rng: np.random.Generator) -> np.ndarray:
    from scipy.special import ndtri
    from scipy.stats import qmc

    return _unit(ndtri(qmc.Sobol(dim, scramble=True, seed=rng).random(L)).T)


def _stand_ins(data, dim: int):
    """Points of the two stand-ins at a draw, (2, n, d): one generator per draw, so they share components and
    noise like two alphas of a seed."""
    from mfsweep.data.gmm import GaussianMixture

    g = torch.Generator().manual_seed(dim)
    moved = data.means + 0.3 * torch.randn(data.means.shape, generator=g, dtype=torch.float64)
    a = GaussianMixture.from_means(moved, scale=0.3)
    b = GaussianMixture.from_means(moved + 0.05 * torch.randn(data.means.shape, generator=g, dtype=torch.float64),
                                   scale=0.33)
    return lambda draw: np.stack([m.sample(N_SPLIT, torch.Generator().manual_seed(draw)).numpy() for m in (a, b)])


def _trained(sweep_dir: Path, dim: int, pair: tuple[float, float]):
    """Points of seed 0's cells at alpha pair[1] and pair[0] (a and b) at an evaluation draw, (2, n, d), from the
    job of `sweep_dir` that trained them at `dim`; None if there is none."""
    from omegaconf import OmegaConf

    from mfsweep.sweep.record import read_record
    from mfsweep.sweep.reevaluate import jobs, restore_job

    for ckpt, cells in jobs(sweep_dir):
        if OmegaConf.load(cells[0] / "config.yaml").dataset.dim != dim:
            continue
        keys = [(r["seed"], r["alpha"]) for r in map(read_record, cells)]
        if (0, pair[0]) in keys and (0, pair[1]) in keys:
            task, _, _ = restore_job(ckpt, cells)
            idx = [keys.index((0, pair[1])), keys.index((0, pair[0]))]
            return lambda draw: task.generate(N_SPLIT, draw=draw)[idx].numpy()
    return None


def _per_direction(points: np.ndarray, pool: np.ndarray, dirs: np.ndarray) -> np.ndarray:
    """(L, 2): each direction's W1 of the two point sets (2, n, d) against the pool's block means."""
    from mfsweep.metrics.sliced import reference_quantiles, sw_to_quantiles

    q = reference_quantiles(pool, dirs, points.shape[1])
    return np.array([sw_to_quantiles(points, dirs[:, [j]], q[[j]])[0] for j in range(dirs.shape[1])])


def directions_in_d(dims: list[int], draws: int, point_draws: int, trained: Path | None,
                    pair: tuple[float, float]) -> None:
    from omegaconf import OmegaConf
    from scipy.stats import chi2

    from mfsweep.config import CONF_DIR
    from mfsweep.data import make_vector_dataset
    from mfsweep.metrics.sliced import directions
    from mfsweep.tasks.streams import generator

    designs = {ORTHOGONAL: lambda dim, rng: directions(dim, L, rng),
               "scrambled Sobol (QMC)": _sobol}
    node = {k: v for k, v in OmegaConf.to_container(OmegaConf.load(CONF_DIR / "dataset" / "dgmm.yaml")).items()
            if k != "task"}
    per_record = np.sqrt(N_SPLITS)  # a record averages 10 splits, each with its own directions
    what = f"trained cells of {trained}, seed 0, a: alpha {pair[1]:g}, b: alpha {pair[0]:g}" if trained else "stand-ins"
    print(f"\n{what}; one split ({N_SPLIT:,} points, pool {POOL_RATIO}x) held fixed, {L} directions; SDs of a "
          f"{N_SPLITS}-split record (one split's / sqrt({N_SPLITS})) over {draws} draws of the directions "
          f"({point_draws} of the points); variance ratio = independent / design (95% interval)\n")
    print("| d | what varies | SW1(a) | SD of SW1(a) | variance ratio | SW1(b) - SW1(a) | SD of the difference | variance ratio |")
    print("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for dim in dims:
        data = make_vector_dataset(**(node | {"dim": dim}))
        redraw = _trained(trained, dim, pair) if trained else _stand_ins(data, dim)
        if redraw is None:
            print(f"| {dim} | no completed cells of seed 0 at alphas {pair[1]:g} and {pair[0]:g} | | | | | | |")
            continue
        pool = data.sample(POOL_RATIO * N_SPLIT, generator(0, "pool")).numpy()  # seed 0's first split's pool
        points = redraw(0)
        per_direction = {}  # design -> (draws, L, 2)
        for j, (name, design) in enumerate(designs.items()):
            rng = np.random.default_rng([dim, j])
            per_direction[name] = np.array([_per_direction(points, pool, design(dim, rng)) for _ in range(draws)])
        # Independent uniform directions: the mean of L of them has variance (variance over directions) / L,
        # exactly; the orthogonal blocks' columns are each uniform, so their R L values estimate it.
        base = [(m, v / L, 0) for m, v, _ in _stats(per_direction[ORTHOGONAL].reshape(-1, 2))]
        fixed = directions(dim, L, np.random.default_rng([dim, len(designs)]))
        rows = {"directions: independent Gaussian (variance over directions / L)": base} | {
            f"directions: {name}": _stats(v.mean(axis=1)) for name, v in per_direction.items()} | {
            "points redrawn (directions fixed)": _stats(np.array([_per_direction(redraw(1 + i), pool, fixed).mean(axis=0)
                                                                  for i in range(point_draws)]))}
        for name, row in rows.items():
            out = []
            for (mean, var, k), (_, var0, _), sign in zip(row, base, ("", "+")):
                ratio = var0 / var  # its interval treats var0 as known: R L values against R
                interval = f" [{ratio * chi2.ppf(0.025, k) / k:.2f}, {ratio * chi2.ppf(0.975, k) / k:.2f}]" if k else ""
                out += [f"{mean:{sign}.4f}", f"{np.sqrt(var) / per_record:.5f}",
                        f"{ratio:.2f}{interval}" if name.startswith("directions") else "-"]
            print(f"| {dim} | {name} | " + " | ".join(out) + " |")


def _stats(values: np.ndarray) -> list[tuple[float, float, int]]:
    """(mean, variance, degrees of freedom) over the draws of SW1(a) and of SW1(b) - SW1(a), from (R, 2) values."""
    return [(float(x.mean()), float(x.var(ddof=1)), len(x) - 1) for x in (values[:, 0], values[:, 1] - values[:, 0])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", nargs="?", type=Path, default=Path("/work/scratch/eval/e8"),
                        help="a trained 2-D sweep with checkpoints (default: docs/evaluation.md's eight_gaussians)")
    parser.add_argument("--pair", type=float, nargs=2, default=(0.8, 0.0), help="the alphas differenced")
    parser.add_argument("--draws", type=int, default=6, help="draws per source in part 1")
    parser.add_argument("--records", default="q", help="the records' evaluation names, this prefix + the draw")
    parser.add_argument("--dims", type=int, nargs="*", default=[32, 128], help="part 2's dimensions (none: skip)")
    parser.add_argument("--direction-draws", type=int, default=80, help="draws of each direction design")
    parser.add_argument("--point-draws", type=int, default=20, help="draws of the points, directions fixed")
    parser.add_argument("--dgmm-sweep", type=Path, default=Path("/work/runs/dgmm_grid"),
                        help="part 2's trained cells (default: sweeps/dgmm_grid.yaml's run, docs/dgmm.md)")
    parser.add_argument("--stand-ins", action="store_true", help="part 2 on the stand-ins, not trained cells")
    parser.add_argument("--skip-sources", action="store_true", help="part 2 only")
    args = parser.parse_args()
    start = time.perf_counter()
    if not args.skip_sources:
        by_source(args.sweep_dir, tuple(args.pair), args.draws, args.records)
    if args.dims:
        trained = None if args.stand_ins else args.dgmm_sweep
        directions_in_d(args.dims, args.direction_draws, args.point_draws, trained, tuple(args.pair))
    print(f"\n{time.perf_counter() - start:.0f} s, torch {torch.__version__}, {torch.get_num_threads()} thread(s)")


if __name__ == "__main__":
    main()
