"""Schedules and proxies against the constant-alpha grid beside them (mfsweep/report/compare.py): constructed
records whose per-seed differences are known, in one folder and in two folders reported together."""
from __future__ import annotations

from pathlib import Path

import pytest
from scipy import stats

from mfsweep.cli.report import main as report_main
from mfsweep.sweep.cells import cell_name
from mfsweep.report.aggregate import collect, group_settings, read_history, alpha_rows
from mfsweep.report.compare import compare_methods
from mfsweep.sweep.record import make_record, write_record
from mfsweep.report.page import build_report

EMA = {"name": "ema", "ema_decay": 0.99}
COSINE = {"name": "cosine", "start": 0.0, "end": 1.0, "begin": 0, "end_step": 1000}
HEAD = {"name": "velocity_head", "loss_weight": 1.0}
SEED_SHIFT = [0.0, 0.03, -0.02]  # what all cells of one seed share (it cancels in a paired difference)


def _cell(folder: Path, seed: int, sw1: float, alpha: float | None = None, schedule=None, tangent=EMA,
          history: dict[int, float] | None = None, dataset: str = "two_moons", own: dict | None = None) -> None:
    """One cell's record (and history.csv) in `folder`, where its setting's cells are."""
    cell = folder / cell_name(None if schedule and schedule["name"] != "constant" else alpha, seed)
    write_record(cell, make_record(
        status="completed", task="toy", dataset=dataset, dim=2, alpha=alpha if alpha is not None else 0.5,
        seed=seed, tangent=tangent, anchor_weight=0.0, adaptive_p=0.0, steps=1000, wall_s=2.0,
        metrics={"sw1": sw1, "sw2": sw1, "grad_var": 1.0 + seed}, alpha_schedule=schedule,
        alpha_trajectory=None if schedule is None else {"start": 0.0, "end": 1.0, "mean": 0.5},
        extra={"setting": {"dataset": dataset} | (own or {})}))
    if history is not None:
        (cell / "history.csv").write_text("step,eval/sw1\n" + "".join(f"{s},{v}\n" for s, v in history.items()))


def _grid(root: Path, dataset: str = "two_moons") -> None:
    """alpha 0, 0.5, 1: SW1 0.10, 0.08 (best), 0.09 plus each seed's shift; eval/sw1 at steps 500 and 1000."""
    for alpha, sw1 in ((0.0, 0.10), (0.5, 0.08), (1.0, 0.09)):
        for seed, shift in enumerate(SEED_SHIFT):
            _cell(root / dataset, seed, sw1 + shift, alpha=alpha, dataset=dataset,
                  schedule={"name": "constant", "value": alpha},
                  history={500: 0.2 + shift, 1000: sw1 + shift})


def _methods(root: Path) -> None:
    """cosine: 0.085 + shift + 0.001 * seed (beats alpha = 0 by ~0.014, loses to 0.5 by ~0.006), equal to
    alpha = 0 at step 500; velocity_head at alpha = 1: equal to alpha = 0 up to +-0.004 (not distinguishable)."""
    for seed, shift in enumerate(SEED_SHIFT):
        _cell(root / "cosine", seed, 0.085 + shift + 0.001 * seed, schedule=COSINE, own={"alpha": "cosine"},
              history={500: 0.2 + shift, 1000: 0.085 + shift + 0.001 * seed})
        _cell(root / "head", seed, 0.10 + shift + (0.004, -0.004, 0.001)[seed], alpha=1.0, tangent=HEAD,
              schedule={"name": "constant", "value": 1.0})


def _results(*roots: Path):
    cells = [c for r in roots for c in collect(r)]
    return compare_methods(group_settings(alpha_rows(cells)), read_history)


def test_a_schedule_is_paired_with_alpha_zero_and_the_best_constant(tmp_path):
    _grid(tmp_path)
    _methods(tmp_path)
    cosine, head = sorted(_results(tmp_path), key=lambda m: m.method)
    assert (cosine.method, head.method) == ("cosine", "velocity_head, alpha = 1")
    diffs = [0.085 + 0.001 * s - 0.10 for s in range(3)]
    assert cosine.vs_zero.mean == pytest.approx(sum(diffs) / 3)
    assert cosine.vs_zero.sem == pytest.approx(stats.sem(diffs))
    assert cosine.vs_zero.distinguishable and cosine.vs_zero.mean < 0
    assert cosine.best_constant == 0.5
    assert cosine.vs_best.mean == pytest.approx(0.085 + 0.001 - 0.08)
    assert cosine.vs_best.distinguishable
    assert cosine.mean_alpha == pytest.approx(0.5)
    # the checkpoints: equal at step 500, the final difference at 1000
    assert [(s, iv.mean) for s, iv in cosine.steps] == [(500, pytest.approx(0.0)), (1000, pytest.approx(sum(diffs) / 3))]
    # the head's differences (0.004, -0.004, 0.001) straddle zero
    assert head.vs_zero.mean == pytest.approx(0.001 / 3) and not head.vs_zero.distinguishable
    assert head.steps == []  # it logged no checkpoints
    # simultaneous intervals, by hand: Bonferroni over the grid's 3 alphas, t with 2 degrees of freedom
    c3, c1 = stats.t.isf(0.05 / 6, 2), stats.t.isf(0.025, 2)
    sem = stats.sem(diffs)
    assert (cosine.vs_zero.low, cosine.vs_zero.high) == (pytest.approx(-0.014 - c3 * sem), pytest.approx(-0.014 + c3 * sem))
    assert cosine.unadjusted[0].low == pytest.approx(-0.014 - c1 * sem)
    assert sorted(cosine.family) == [0.0, 0.5, 1.0] and cosine.family[0.5] is cosine.vs_best
    assert cosine.family[1.0].mean == pytest.approx(0.085 + 0.001 - 0.09)
    assert cosine.against_constants() == ("higher", 0.5)
    assert cosine.sentence() == (
        "two_moons: cosine: SW1 0.089 ± 0.014 over 3 seeds (mean alpha 0.50); against alpha = 0: -0.01400 ± "
        "0.00058 over 3 paired seeds, lower (simultaneous 95% [-0.01842, -0.00958]; unadjusted, as in the paper, "
        "[-0.01648, -0.01152]); against the best constant alpha (0.5): +0.00600 ± 0.00058 over 3 paired seeds, "
        "higher (simultaneous 95% [+0.00158, +0.01042]; unadjusted, as in the paper, [+0.00352, +0.00848]); "
        "against all 3 constant alphas at once: higher than alpha = 0.5.")
    assert head.sentence().endswith(
        "against alpha = 0: +0.0003 ± 0.0023 over 3 paired seeds, not distinguishable from zero (simultaneous 95% "
        "[-0.0175, +0.0182]; unadjusted, as in the paper, [-0.0097, +0.0104]); against the best constant alpha "
        "(0.5): +0.0203 ± 0.0023 over 3 paired seeds, higher (simultaneous 95% [+0.0025, +0.0382]; unadjusted, as "
        "in the paper, [+0.0103, +0.0304]); against all 3 constant alphas at once: higher than alpha = 0.5.")


def test_the_best_constant_picked_from_the_same_seeds_needs_the_simultaneous_interval(tmp_path):
    """Eleven constant alphas; the method sits 0.002 above the best one with per-seed noise, so the plain
    t-interval against the best excludes zero while the family over 11 alphas does not; a method below every
    constant alpha is called lower than every one."""
    noise = [0.0005, -0.0005, 0.0]
    for i in range(11):
        alpha = i / 10
        for seed, shift in enumerate(SEED_SHIFT):
            _cell(tmp_path / "two_moons", seed, 0.10 - 0.001 * i + shift, alpha=alpha,
                  schedule={"name": "constant", "value": alpha})
    for seed, shift in enumerate(SEED_SHIFT):
        _cell(tmp_path / "near", seed, 0.092 + shift + noise[seed], schedule=COSINE, own={"alpha": "cosine"})
        _cell(tmp_path / "low", seed, 0.05 + shift + noise[seed], schedule=COSINE | {"end": 0.5},
              own={"alpha": "cosine_low"})
    results = {m.method: m for m in _results(tmp_path)}
    near, low = results["cosine, end=1.0"], results["cosine, end=0.5"]
    assert near.best_constant == 1.0 and near.vs_best.mean == pytest.approx(0.002)
    assert near.unadjusted[1].distinguishable  # the paper's interval: "higher than the best constant"
    sem = stats.sem([0.0025, 0.0015, 0.002])
    assert near.vs_best.low == pytest.approx(0.002 - stats.t.isf(0.05 / 22, 2) * sem)
    assert not near.vs_best.distinguishable and near.against_constants() == ("neither", None)
    assert near.sentence().endswith("against all 11 constant alphas at once: neither lower than all nor higher "
                                    "than any.")
    assert low.against_constants() == ("lower", None)
    assert low.sentence().endswith("against all 11 constant alphas at once: lower than every one.")


def test_methods_match_their_own_dataset_and_nothing_without_a_grid(tmp_path):
    _grid(tmp_path / "a")
    _methods(tmp_path / "a")
    _methods(tmp_path / "b")  # records of another folder: no grid there
    for seed in range(3):  # a schedule on a dataset whose grid was never run: no comparison
        _cell(tmp_path / "a" / "cosine_roll", seed, 0.2, schedule=COSINE, dataset="swiss_roll", own={"alpha": "cosine"})
    results = _results(tmp_path / "a")
    assert sorted(m.method for m in results) == ["cosine", "velocity_head, alpha = 1"]
    assert {m.base for m in results} == {"two_moons"}


def test_report_of_two_folders_compares_a_schedule_with_the_grid_of_the_other(tmp_path, capsys):
    _grid(tmp_path / "grid")
    _methods(tmp_path / "methods")
    assert report_main([str(tmp_path / "grid"), str(tmp_path / "methods")]) == 0
    out = capsys.readouterr().out
    assert "- two_moons: cosine: SW1 0.089 ± 0.014 over 3 seeds" in out
    assert "Schedules and proxies against the constant-alpha grid" in out
    md = (tmp_path / "grid" / "report.md").read_text()
    assert ("| two_moons | cosine | 0.50 | 0.0893 ± 0.0143 | -0.01400 ± 0.00058* | 0.5 | +0.00600 ± 0.00058* | "
            "2.00 ± 0.58 | 2 |") in md
    assert "| two_moons | cosine | +0 | -0.01400 ± 0.00058* |" in md  # matched steps 500 (equal) and 1000
    assert "Folders: " in md and not (tmp_path / "methods" / "report.md").exists()
    # a folder that does not exist is named, and nothing is written
    assert report_main([str(tmp_path / "grid"), str(tmp_path / "nowhere")]) == 2
    assert "nowhere does not exist" in capsys.readouterr().err


def test_the_grid_stays_the_headline_and_methods_are_not_judged_as_grids(tmp_path):
    _grid(tmp_path)
    _methods(tmp_path)
    rep = build_report(tmp_path)
    assert [r["setting"] for r in rep.tables["headline"].rows if r["metric"] == "sw1"] == [
        next(s.label for s in rep.settings if s.keys["alpha_schedule"] == "constant" and len(s.rows) == 3)]
    assert not any("compare with the constant-alpha settings beside it" in t for t in rep.sections[0].text)
    assert sum(t.startswith("two_moons: cosine") for t in rep.sections[0].text) == 1


def test_the_methods_figure_draws_each_method_at_its_mean_alpha_and_paired_difference(tmp_path):
    _grid(tmp_path)
    _methods(tmp_path)
    fig = build_report(tmp_path).figures["methods_paired"]
    (ax,) = [a for a in fig.axes if a.get_title()]
    points = {line.get_marker(): (line.get_xdata()[0], line.get_ydata()[0]) for line in ax.lines
              if line.get_marker() in ("D", "s")}
    # cosine (first method, a diamond) at its trajectories' mean alpha 0.5; the head (a square) at alpha 1
    assert points["D"] == (pytest.approx(0.5), pytest.approx(-0.014))
    assert points["s"] == (pytest.approx(1.0), pytest.approx(0.001 / 3))
    assert ax.get_title() == "two_moons (best: alpha = 0.5)"
