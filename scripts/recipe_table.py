"""The recipe study's table (docs/defaults.md): per setting and set, the final SW1 at alpha = 0, its excess
over the noise floor, and whether SW1 stopped improving (no late rise).

    python scripts/recipe_table.py runs/recipe_study [--markdown]

The floor is SW1 between two independent reference draws of the evaluation's size under the evaluation's
projections, averaged over the study's seeds; the curve's floor (2,000 points, 200 directions) is computed
the same way. "Late rise" compares the last checkpoint of the seed-mean curve with its lowest value over the
second half of training: a rise of more than one SEM (over seeds, at the last checkpoint) is flagged.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
import yaml

from mfsweep.data import make_vector_dataset
from mfsweep.metrics.sliced import sliced_wasserstein

SETS = ("checkerboard", "eight_gaussians", "two_moons", "swiss_roll", "two_spirals", "pinwheel")
# The recipe keys the study varies, read from each cell's config.yaml (so the table does not depend on how
# the cells were launched or where their folders are).
RECIPE_KEYS = ("time.dist", "time.ratio", "trainer.lr", "trainer.lr_schedule", "trainer.grad_clip",
               "trainer.ema_decay")


def _get(cfg: dict, key: str):
    for part in key.split("."):
        cfg = cfg[part]
    return cfg


def floor(name: str, n: int, n_projections: int, seeds: list[int]) -> float:
    """Mean over `seeds` of SW1 between two independent `n`-point draws of the set."""
    data = make_vector_dataset(name)
    values = []
    for s in seeds:
        a = data.sample(n, torch.Generator().manual_seed(10_000 + 2 * s)).numpy()
        b = data.sample(n, torch.Generator().manual_seed(10_001 + 2 * s)).numpy()
        values.append(sliced_wasserstein(a, b, n_projections, 0)["sw1"])
    return float(np.mean(values))


def mean_sem(v: list[float]) -> tuple[float, float]:
    a = np.asarray(v, dtype=float)
    return float(a.mean()), float(a.std(ddof=1) / math.sqrt(len(a))) if len(a) > 1 else float("nan")


def curve(cell: Path) -> dict[int, float]:
    with open(cell / "history.csv") as f:
        return {int(r["step"]): float(r["eval/sw1"]) for r in csv.DictReader(f) if r.get("eval/sw1")}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("root")
    args = ap.parse_args()
    groups: dict[tuple[str, str], list[Path]] = defaultdict(list)
    for rec in sorted(Path(args.root).rglob("alpha=0,seed=*/result.json")):
        cfg = yaml.safe_load((rec.parent / "config.yaml").read_text())
        setting = " ".join(f"{k}={_get(cfg, k)}" for k in RECIPE_KEYS)
        groups[(setting, cfg["dataset"]["name"])].append(rec.parent)
    floors = {s: floor(s, 10_000, 1000, [0, 1, 2]) for s in SETS}
    curve_floors = {s: floor(s, 2000, 200, [0, 1, 2]) for s in SETS}
    settings = sorted({s for s, _ in groups})
    print("floor (10k points, 1000 directions): " + ", ".join(f"{s} {floors[s]:.4f}" for s in SETS))
    print("curve floor (2k points, 200 directions): " + ", ".join(f"{s} {curve_floors[s]:.4f}" for s in SETS))
    print()
    print("| setting | " + " | ".join(SETS) + " | mean excess |")
    print("| --- | " + " | ".join("---" for _ in SETS) + " | --- |")
    rises = []
    for setting in settings:
        cols, excess = [], []
        for s in SETS:
            cells = groups.get((setting, s), [])
            records = [json.loads((c / "result.json").read_text()) for c in cells]
            sw1 = [r["metrics"]["sw1"] for r in records if r["status"] == "completed"]
            if len(sw1) < len(records) or not sw1:
                cols.append("n/a")
                continue
            m, e = mean_sem(sw1)
            excess.append(m - floors[s])
            curves = [curve(c) for c in cells]
            steps = sorted(set.intersection(*(set(c) for c in curves)))
            mean_curve = {st: float(np.mean([c[st] for c in curves])) for st in steps}
            last = steps[-1]
            tail = [mean_curve[st] for st in steps if st >= last / 2]
            _, last_sem = mean_sem([c[last] for c in curves])
            rise = mean_curve[last] - min(tail)
            flag = "" if rise <= last_sem else " (late rise)"
            if flag:
                rises.append(f"{setting} / {s}: last {mean_curve[last]:.3f}, min {min(tail):.3f}, SEM {last_sem:.3f}")
            cols.append(f"{m - floors[s]:.4f} ± {e:.4f}{flag}")
        mean_excess = f"**{np.mean(excess):.4f}**" if len(excess) == len(SETS) else "n/a"
        print(f"| {setting} | " + " | ".join(cols) + f" | {mean_excess} |")
    print()
    print("Late rises (seed-mean curve at the last checkpoint above its second-half minimum by more than 1 SEM):")
    for line in rises or ["none"]:
        print("- " + line)
    print()
    print("Seed-mean SW1 curve (2k points), per set, for each setting:")
    for setting in settings:
        for s in SETS:
            cells = groups.get((setting, s), [])
            if not cells:
                continue
            curves = [curve(c) for c in cells]
            steps = sorted(set.intersection(*(set(c) for c in curves)))
            print(f"{setting} / {s}: " + " ".join(f"{st // 1000}k:{np.mean([c[st] for c in curves]):.3f}" for st in steps))


if __name__ == "__main__":
    main()
