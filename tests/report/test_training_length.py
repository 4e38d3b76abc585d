"""scripts/training_length.py: the training length read off alpha = 0's seed-mean `eval/sw1` curve alone."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from mfsweep.sweep.cells import cell_name
from mfsweep.sweep.record import make_record, write_record

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "training_length.py"


def _cell(folder: Path, seed: int, curve: dict[int, float], alpha: float = 0.0) -> None:
    cell = folder / cell_name(alpha, seed)
    write_record(cell, make_record(
        status="completed", task="dgmm", dataset="dgmm", dim=2, alpha=alpha, seed=seed,
        tangent={"name": "ema", "ema_decay": 0.99}, anchor_weight=0.0, adaptive_p=1.0, steps=max(curve), wall_s=1.0,
        metrics={"sw1": curve[max(curve)]}, alpha_schedule={"name": "constant", "value": alpha},
        extra={"setting": {"dataset": "dgmm"}}))
    (cell / "history.csv").write_text("step,eval/sw1\n" + "".join(f"{s},{v}\n" for s, v in curve.items()))


def _run(folder: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), str(folder), "--candidates", "1000,2000,3000",
                           "--tolerance", "0.05"], capture_output=True, text=True)


def test_the_shortest_candidate_within_the_tolerance_of_the_lowest_seed_mean(tmp_path):
    # seed means 0.30, 0.2090, 0.2000 (lowest at 3000): 2000 is 4.5% above it, so chosen; 1000 is not
    _cell(tmp_path, 0, {1000: 0.31, 2000: 0.2080, 3000: 0.1990})
    _cell(tmp_path, 1, {1000: 0.29, 2000: 0.2100, 3000: 0.2010})
    out = _run(tmp_path)
    assert out.returncode == 0, out.stderr
    row = out.stdout.splitlines()[-1]
    assert row.startswith("| dgmm | 2 | 0.300 ± 0.010, 0.2090 ± 0.0010, 0.2000 ± 0.0010 | 0.2000 (3,000) | 2,000 |")


def test_a_curve_lowest_before_every_candidate_names_none(tmp_path):
    for seed in range(2):
        _cell(tmp_path, seed, {500: 0.10, 1000: 0.20, 2000: 0.25, 3000: 0.30})
    assert _run(tmp_path).stdout.splitlines()[-1].endswith("| 0.1000 (500) | - |")


def test_another_alpha_is_refused(tmp_path):
    _cell(tmp_path, 0, {1000: 0.3, 2000: 0.2})
    _cell(tmp_path, 0, {1000: 0.3, 2000: 0.2}, alpha=0.5)
    out = _run(tmp_path)
    assert out.returncode != 0 and "has alphas other than 0; this choice reads alpha = 0 only" in out.stderr
