"""The verdict sentence and the matched-step table, on constructed records and histories whose answer is known."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from conftest import compose_cfg
from mfsweep.report.aggregate import collect, group_settings, read_history, alpha_rows
from mfsweep.sweep.record import make_record, write_record
from mfsweep.report.page import build_report
from mfsweep.report.formatting import fmt_pm
from mfsweep.report.verdict import (
    checkpoint_key, matched_steps, paired_interval, setting_histories, stability, verdict,
)


def _sweep(root: Path, sw1: dict[float, list[float | None]], history=None) -> Path:
    """Records of a 2-D setting: `sw1[alpha][seed]` (None: that cell failed); `history(alpha, seed)` gives
    {step: eval/sw1} for history.csv."""
    for alpha, values in sw1.items():
        for seed, v in enumerate(values):
            cell = root / f"alpha={alpha:g},seed={seed}"
            status = "completed" if v is not None else "failed"
            write_record(cell, make_record(
                status=status, error=None if v is not None else "RuntimeError: boom", task="toy",
                dataset="two_moons", dim=2, alpha=alpha, seed=seed, tangent={"name": "ema", "ema_decay": 0.99}, anchor_weight=0.0,
                adaptive_p=0.0, steps=1000, wall_s=1.0, metrics={"sw1": v, "sw2": v}))
            if history is not None and v is not None:
                rows = "".join(f"{step},{value}\n" for step, value in history(alpha, seed).items())
                (cell / "history.csv").write_text("step,eval/sw1\n" + rows)
    return root


def _setting(root: Path):
    (setting,) = group_settings(alpha_rows(collect(root)))
    return setting


def test_paired_interval_matches_scipy_one_sample_t():
    diffs = [-0.031, -0.012, -0.025, -0.004]
    iv = paired_interval(diffs)
    ci = stats.ttest_1samp(diffs, 0.0).confidence_interval(0.95)
    assert (iv.low, iv.high) == (pytest.approx(ci.low), pytest.approx(ci.high))
    assert iv.sem == pytest.approx(np.std(diffs, ddof=1) / 2)
    assert iv.distinguishable == (ci.high < 0)
    assert not paired_interval([0.5]).distinguishable and paired_interval([0.5]).low is None


def test_clear_winner(tmp_path):
    base = [0.20, 0.25, 0.30]
    v = verdict(_setting(_sweep(tmp_path, {0.0: base, 0.5: [b - 0.05 + d for b, d in zip(base, (0.001, -0.002, 0.001))],
                                          1.0: [b + 0.02 for b in base]})))
    diffs = np.array([-0.049, -0.052, -0.049])
    assert (v.best, v.against, v.difference.n) == (0.5, 0.5, 3)
    assert v.difference.mean == pytest.approx(diffs.mean())
    assert v.difference.distinguishable
    s = v.sentence()
    assert s.startswith("two_moons: best alpha = 0.5, SW1 lower than at alpha = 0 by ")
    assert fmt_pm(-diffs.mean(), diffs.std(ddof=1) / np.sqrt(3)) in s
    assert "(20% of SW1 at alpha = 0; mean ± SEM over 3 paired seeds), distinguishable from zero" in s
    assert "not distinguishable" not in s
    # the answer, from the simultaneous intervals over both alphas: alpha 0.5 is better
    a = v.answer
    assert (a.answer, a.best_alpha, a.worse, a.seeds) == ("better", 0.5, (1.0,), {0.0: 3, 0.5: 3, 1.0: 3})
    assert a.margin == pytest.approx(0.02 * 0.25)  # verdict.margin's default share of alpha 0's mean SW1


def test_the_answer_takes_verdict_margin_from_the_cells_config(tmp_path):
    root = _sweep(tmp_path, {0.0: [0.20, 0.25, 0.30], 0.5: [0.201, 0.249, 0.301]})
    cells = sorted(root.glob("alpha=*"))
    for cell in cells:
        (cell / "config.yaml").write_text("verdict:\n  margin: 0.1\n")
    a = verdict(_setting(root)).answer
    assert a.margin == pytest.approx(0.1 * 0.25) and a.answer == "equivalent"
    (cells[0] / "config.yaml").write_text("verdict:\n  margin: 0.05\n")
    with pytest.raises(ValueError, match=r"two_moons: its cells' config.yaml disagree on verdict.margin \(\[0.05, 0.1\]\)"):
        verdict(_setting(root))


def test_tie_is_not_distinguishable(tmp_path):
    v = verdict(_setting(_sweep(tmp_path, {0.0: [0.20, 0.25, 0.30], 0.5: [0.21, 0.23, 0.305]})))
    assert v.best == 0.5 and not v.difference.distinguishable
    assert "not distinguishable from zero (unadjusted 95% paired t-interval [" in v.sentence()


def test_best_at_zero_names_the_runner_up_not_a_zero_difference(tmp_path):
    v = verdict(_setting(_sweep(tmp_path, {0.0: [0.20, 0.25, 0.30], 0.5: [0.26, 0.30, 0.37],
                                          1.0: [0.212, 0.258, 0.31]})))
    s = v.sentence()
    assert (v.best, v.against) == (0.0, 1.0)
    assert s.startswith("two_moons: best alpha = 0 (vanilla MeanFlow): the runner-up, alpha = 1, has SW1 higher by ")
    assert "by 0.0100 ± 0.0012 (4.0% of SW1 at alpha = 0; mean ± SEM over 3 paired seeds)" in s
    assert "+0.0%" not in s and "0.0000 ± 0.0000" not in s


def test_failed_seed_removes_its_alpha_and_is_said(tmp_path):
    # alpha 0.5 has the lowest mean but lost a seed: not a candidate; alpha 1 is the best of the complete ones.
    v = verdict(_setting(_sweep(tmp_path, {0.0: [0.20, 0.25, 0.30], 0.5: [0.01, None, 0.02],
                                          1.0: [0.18, 0.22, 0.29]})))
    s = v.sentence()
    assert v.best == 1.0 and v.difference.n == 3
    assert s.endswith("1 cell did not complete (1 failed); alphas missing a seed are not candidates.")


def test_one_seed_is_too_few_to_judge(tmp_path):
    v = verdict(_setting(_sweep(tmp_path, {0.0: [0.20], 0.5: [0.10]})))
    assert v.difference.sem is None and not v.difference.distinguishable
    assert "by 0.1 (50% of SW1 at alpha = 0; 1 paired seed: too few to tell from zero)." in v.sentence()


def test_a_single_alpha_has_nothing_to_compare(tmp_path):
    v = verdict(_setting(_sweep(tmp_path, {0.0: [0.20, 0.25]})))
    assert v.sentence() == "two_moons: the sweep has one alpha (0): nothing to compare."


def test_a_sweep_without_sw1_is_judged_by_fid(tmp_path):
    for alpha, fids in {0.0: [20.0, 22.0], 1.0: [18.0, 19.0]}.items():
        for seed, fid in enumerate(fids):
            write_record(tmp_path / f"alpha={alpha:g},seed={seed}", make_record(
                status="completed", task="latent_dit", dataset="digits", dim=64, alpha=alpha, seed=seed,
                tangent={"name": "ema", "ema_decay": 0.99}, anchor_weight=0.0, adaptive_p=1.0, steps=10, wall_s=1.0, metrics={"fid": fid}))
    v = verdict(_setting(tmp_path))
    assert (v.metric, v.best, v.difference.mean) == ("fid", 1.0, pytest.approx(-2.5))
    assert v.sentence().startswith("digits: best alpha = 1, FID lower than at alpha = 0 by 2.50 ± 0.50 (12% of FID")
    assert verdict(_setting(tmp_path), "sw1").sentence() == "digits: no verdict: no completed cell recorded SW1."
    report = build_report(tmp_path)
    assert report.verdicts[0].metric == "fid" and report.sections[0].figures[0][0] == "fid_paired"
    # the headline table picks its best alpha by FID too (it used to look for SW1 and find none)
    (head,) = report.tables["headline"].rows
    assert head["metric"] == "fid" and head["best alpha"] == 1.0
    assert head["best - 0 (paired)"]["mean"] == pytest.approx(-2.5) and head["best - 0 (paired)"]["n"] == 2


def _fid_record(root: Path, alpha: float, seed: int, fid: float, **eval_info) -> None:
    write_record(root / f"alpha={alpha:g},seed={seed}", make_record(
        status="completed", task="latent_dit", dataset="digits", dim=64, alpha=alpha, seed=seed,
        tangent={"name": "ema", "ema_decay": 0.99}, anchor_weight=0.0, adaptive_p=1.0, steps=10, wall_s=1.0,
        metrics={"fid": fid}, eval_info={"n_samples": 200, "n_steps": 1} | eval_info))


def test_fid_records_before_the_jackknife_pair_with_new_ones_and_another_draw_is_refused(tmp_path):
    """Records from before the jackknife (no draw, no blocks, no splits) report beside new ones with no evaluation
    SE (blocks change no FID); with splits on both sides, the SE of the paired difference; a draw 1 is refused."""
    splits = {0.0: [[20.0, 21.0, 19.0], [22.0, 23.0, 24.0]], 1.0: [[18.0, 18.5, 19.5], [19.0, 19.0, 22.0]]}
    for seed in (0, 1):
        _fid_record(tmp_path, 0.0, seed, 20.0 + 2 * seed)
        _fid_record(tmp_path, 1.0, seed, 18.5 + seed, draw=0, jackknife_blocks=3,
                    splits={"fid": splits[1.0][seed]})
    (v,) = build_report(tmp_path).verdicts
    assert v.difference.mean == pytest.approx(-2.0) and v.eval_se is None and "evaluation SE" not in v.sentence()
    for seed in (0, 1):
        _fid_record(tmp_path, 0.0, seed, 20.0 + 2 * seed, draw=0, jackknife_blocks=3, splits={"fid": splits[0.0][seed]})
    per_seed = [np.var(np.subtract(splits[1.0][s], splits[0.0][s]), ddof=1) / 3 for s in (0, 1)]
    assert build_report(tmp_path).verdicts[0].eval_se == pytest.approx(np.sqrt(sum(per_seed)) / 2)
    _fid_record(tmp_path, 0.0, 1, 22.0, draw=1, jackknife_blocks=3, splits={"fid": splits[0.0][1]})
    with pytest.raises(ValueError, match=r"cells evaluated differently \(draw=\d vs \d"):
        build_report(tmp_path)


def _curve(flip_at: int | None):
    """eval/sw1 at steps 100..1000: alpha 0.5 is 0.02 below alpha 0 (seed noise shared), until `flip_at`,
    after which it is 0.02 above."""
    def history(alpha, seed):
        out = {}
        for step in range(100, 1001, 100):
            gap = 0.0 if alpha == 0.0 else (-0.02 if flip_at is None or step < flip_at else 0.02)
            out[step] = 1.0 / step ** 0.5 + 0.01 * seed + gap + 0.001 * seed * (alpha > 0)
        return out
    return history


def _final(history):
    return {a: [history(a, s)[1000] for s in range(3)] for a in (0.0, 0.5)}


def test_matched_steps_stable(tmp_path):
    history = _curve(None)
    setting = _setting(_sweep(tmp_path, _final(history), history))
    hs = setting_histories(setting, read_history)
    assert checkpoint_key(hs) == "eval/sw1"
    table = matched_steps(setting, hs, "eval/sw1")
    assert [v.step for v in table] == list(range(100, 1001, 100))
    assert all(v.best == 0.5 for v in table)
    assert table[0].difference.mean == pytest.approx(-0.02 + 0.001)  # mean over seeds 0, 1, 2 of 0.001 * seed
    assert table[0].difference.distinguishable
    assert stability(table) == ("stable over the last third of training: best alpha = 0.5 at all 4 checkpoints "
                                "(steps 700-1000)")


def test_matched_steps_flip_late(tmp_path):
    history = _curve(900)
    setting = _setting(_sweep(tmp_path, _final(history), history))
    table = matched_steps(setting, setting_histories(setting, read_history), "eval/sw1")
    assert [v.best for v in table] == [0.5] * 8 + [0.0] * 2
    assert (table[-1].against, table[-1].difference.mean) == (0.5, pytest.approx(0.02 + 0.001))
    assert stability(table) == ("not stable over the last third of training (steps 700-1000): best alpha "
                                "0.5 at 700, 0.5 at 800, 0 at 900, 0 at 1000")


@pytest.mark.parametrize("overrides", [(), ("experiment=demo",), ("dataset=dgmm",)], ids=["toy", "demo", "dgmm"])
def test_grids_log_about_ten_checkpoints_by_default(overrides):
    cfg = compose_cfg(*overrides)
    assert cfg.trainer.max_steps // cfg.eval.every == 10


def test_the_dit_logs_no_fid_checkpoints_unless_asked():
    assert compose_cfg("trainer=dit", "model=dit_s_2", "dataset=digits").eval.every == 0
