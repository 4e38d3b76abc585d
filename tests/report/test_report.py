"""The alpha-comparison report: its numbers against the records, its handling of cells that did not complete,
and the two pages it writes. Reuses the session's tiny packed sweep (copied, then broken on purpose)."""
from __future__ import annotations

import base64
import csv
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from mfsweep.cli.report import main
from mfsweep.report.aggregate import best_alpha, collect, group_settings, alpha_rows
from mfsweep.sweep.record import make_record, read_record, write_record
from mfsweep.report.page import build_report, report_text, write_report

MISSING, FAILED, DIVERGED = "alpha=0.5,seed=1", "alpha=1,seed=0", "alpha=1,seed=1"
ERROR = "RuntimeError: out of memory at step 7"


def _direct(root: Path, alpha: float, metric: str = "sw1", section: str = "metrics") -> tuple[float, float | None, int]:
    """Mean and SEM (std ddof=1 / sqrt n) over the completed records of one alpha, read straight from disk."""
    v = np.array([r[section][metric] for p in root.rglob("result.json")
                  if (r := read_record(p.parent))["alpha"] == alpha and r["status"] == "completed"])
    return v.mean(), (v.std(ddof=1) / np.sqrt(len(v)) if len(v) > 1 else None), len(v)


@pytest.fixture(scope="module")
def broken(tiny_sweep, tmp_path_factory) -> Path:
    """The tiny sweep (alphas 0, 0.5, 1 x seeds 0, 1) with one cell missing, one failed, one diverged, and
    the partial alpha 0.5 given the lowest SW1, so that counting partial alphas would pick it as best."""
    root = tmp_path_factory.mktemp("report") / "sweep"
    shutil.copytree(tiny_sweep, root)
    base = root / "dataset=swiss_roll"
    (base / MISSING / "result.json").unlink()
    rec = read_record(base / "alpha=0.5,seed=0")
    rec["metrics"]["sw1"] = 0.01
    write_record(base / "alpha=0.5,seed=0", rec)
    rec = read_record(base / FAILED)
    rec.update(status="failed", error=f"{ERROR}\nTraceback (most recent call last): ...",
               metrics={k: None for k in rec["metrics"]})
    write_record(base / FAILED, rec)
    rec = read_record(base / DIVERGED)
    rec.update(status="diverged", diverged_step=23, steps=23, metrics={k: None for k in rec["metrics"]})
    write_record(base / DIVERGED, rec)
    return root


@pytest.fixture(scope="module")
def built(broken):
    report = build_report(broken)
    return report, write_report(report)


def test_headline_matches_records_and_skips_partial_alphas(built, broken):
    report, _ = built
    rows = {r["metric"]: r for r in report.tables["headline"].rows}
    assert set(rows) == {"sw1", "sw2"}  # no FID in a 2-D sweep
    mean, sem, n = _direct(broken, 0.0, "sw1")
    zero = rows["sw1"]["alpha = 0"]
    assert (zero["mean"], zero["sem"], zero["n"]) == (pytest.approx(mean, rel=1e-12), pytest.approx(sem, rel=1e-12), 2)
    mean2, sem2, _ = _direct(broken, 0.0, "sw2")
    zero2 = rows["sw2"]["alpha = 0"]
    assert (zero2["mean"], zero2["sem"]) == (pytest.approx(mean2), pytest.approx(sem2))
    # alpha 0.5 has the lowest mean (0.01, one seed) but a missing seed; alpha 1 has none completed.
    assert rows["sw1"]["best alpha"] == 0.0
    assert rows["sw1"]["at best alpha"]["mean"] == pytest.approx(mean)
    assert rows["sw1"]["best - 0 (paired)"] is None  # alpha = 0 against itself is no comparison
    text = report.tables["headline"].cells[0]
    assert text[3] == f"{mean:.4f} ± {sem:.4f}"
    assert text[4:6] == ["(alpha = 0)", "-"]
    floors = [read_record(p.parent)["metrics"]["sw1_floor"] for p in broken.rglob("result.json")
              if read_record(p.parent)["status"] == "completed"]
    assert rows["sw1"]["floor"] == pytest.approx(np.mean(floors))


def test_verdict_opens_every_format(built, broken):
    report, _ = built
    (v,) = report.verdicts
    sentence = v.sentence()
    assert sentence.startswith("swiss_roll: alpha = 0 is the only alpha with every seed completed. ")
    assert sentence.endswith("3 cells did not complete (1 failed, 1 diverged, 1 missing); alphas missing a seed "
                             "are not candidates.")
    # the answer first (one paired seed at alpha 0.5: too few to judge), then the unadjusted verdict, labelled
    answer = v.answer.sentence()
    assert answer == ("swiss_roll: unresolved: lowest mean SW1 at alpha = 0.5, not resolved against margin ±0.01; "
                      "too few paired seeds to judge alpha = 0.5; 2 seeds at alpha = 0, 1 at the fewest.")
    assert report.sections[0].title == "Verdict" and report.sections[0].text[0] == answer
    assert report.sections[0].text[1].startswith("Unadjusted, as in the paper: " + sentence)
    assert report.sections[0].figures[0][0] == "sw1_paired"
    md = (broken / "report.md").read_text()
    assert md.index(answer.replace("_", "\\_")) < md.index(sentence.replace("_", "\\_")) < md.index("sw1_paired") \
        < md.index("## Sweep")


def test_verdict_json_holds_each_answer_and_is_written_atomically(built, broken, monkeypatch):
    report, paths = built
    (v,) = report.verdicts
    written = json.loads((broken / "verdict.json").read_text())
    assert paths["verdict"] == broken / "verdict.json" and written == {"settings": [v.answer.to_dict()]}
    (entry,) = written["settings"]
    assert (entry["setting"], entry["metric"], entry["answer"], entry["best_alpha"], entry["rounds"]) == (
        "swiss_roll", "sw1", "unresolved", 0.5, 1)
    assert entry["seeds"] == [{"alpha": 0.0, "seeds": 2}, {"alpha": 0.5, "seeds": 1}]
    # a write that fails before its rename leaves the previous verdict.json whole and no temporary file
    replace = os.replace
    def fail(src, dst):
        if Path(dst).name == "verdict.json":
            raise OSError("disk full")
        replace(src, dst)
    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        write_report(report)
    assert json.loads((broken / "verdict.json").read_text()) == written
    assert not list(broken.glob(".verdict.json.*"))


def test_grid_marks_statuses_and_best(built, broken):
    report, _ = built
    grid = report.tables["sw1_grid"]
    assert grid.columns == ["setting", "alpha = 0", "alpha = 0.5", "alpha = 1"]
    assert grid.cells[0][2] == "0.0100 [missing (1/2)]"
    assert grid.cells[0][3] == "failed (1/2), diverged (1/2)"
    assert grid.bold == {(0, 1)}
    mean, sem, _ = _direct(broken, 0.0, "grad_var")
    gv = report.tables["grad_var_grid"].rows[0]["alpha = 0"]
    assert (gv["mean"], gv["sem"]) == (pytest.approx(mean), pytest.approx(sem))


def test_problem_cells_are_listed_with_their_details(built, broken):
    report, _ = built
    problems = {(r["alpha"], r["seed"]): r for r in report.tables["problems"].rows}
    base = broken / "dataset=swiss_roll"
    assert {k: r["status"] for k, r in problems.items()} == {
        (0.5, 1): "missing", (1.0, 0): "failed", (1.0, 1): "diverged"}
    assert problems[0.5, 1]["folder"] == str(base / MISSING)
    assert problems[1.0, 0]["detail"].startswith(ERROR)
    assert problems[1.0, 1]["detail"] == "diverged at step 23"
    assert report.counts == {"completed": 3, "failed": 1, "diverged": 1, "missing": 1}


def test_pages_are_written_and_self_contained(built, broken):
    report, paths = built
    page = (broken / "report.html").read_text()
    assert paths["html"] == broken / "report.html"
    sources = re.findall(r"""src=['"]([^'"]*)['"]""", page)
    assert len(sources) == len(report.figures) >= 5  # SW1, paired SW1, grad_var, samples, curves
    for src in sources:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert "href=" not in page and "<link" not in page and "<script" not in page
    for needle in (ERROR, "diverged at step 23", "missing (1/2)", "failed (1/2), diverged (1/2)",
                   f"dataset=swiss_roll/{MISSING}"):
        assert needle in page
    md = (broken / "report.md").read_text()
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert sorted(images) == sorted(f"report_files/{k}.png" for k in report.figures)
    assert all((broken / i).read_bytes()[:4] == b"\x89PNG" for i in images)
    assert "**" + report.tables["sw1_grid"].cells[0][1] + "**" in md
    with open(broken / "summary.csv") as f:
        assert len(list(csv.DictReader(f))) == 3
    assert {"Diagnostics", "FID"}.isdisjoint(s.title for s in report.sections)  # no such data in this sweep
    (loss,) = [c for s in report.sections for k, c in s.figures if k == "loss_curves"]
    assert "Not comparable across alpha" in loss and "Not comparable across alpha" in page


def test_best_alpha_and_paired_difference_on_intact_sweep(tiny_sweep):
    report = build_report(tiny_sweep)  # read-only: the shared sweep keeps no report files
    means = {a: _direct(tiny_sweep, a)[0] for a in (0.0, 0.5, 1.0)}
    head = report.tables["headline"].rows[0]
    best = min(means, key=means.get)
    assert head["best alpha"] == best == report.verdicts[0].best
    by_seed = {(r["alpha"], r["seed"]): r["metrics"]["sw1"]
               for p in tiny_sweep.rglob("result.json") if (r := read_record(p.parent))}
    against = best if best else min((a for a in means if a), key=means.get)  # the runner-up when 0 wins
    diffs = np.array([by_seed[against, s] - by_seed[0.0, s] for s in (0, 1)])
    assert report.verdicts[0].difference.mean == pytest.approx(diffs.mean(), rel=1e-9)
    assert report.verdicts[0].difference.sem == pytest.approx(diffs.std(ddof=1) / np.sqrt(2), rel=1e-9)
    fixed, varying = report.tables["settings"].rows[0]["loss keys held fixed across alpha"], \
        report.tables["settings"].rows[0]["loss keys that vary with alpha"]
    assert fixed["anchor_weight"] == 0.0 and fixed["adaptive_p"] == 0.0 and varying == {}


def _synthetic(root: Path, sw1: dict[float, list[float]], diagnostics: bool = False) -> None:
    """Records (no training) of a 3-D setting; with `diagnostics`, alpha* values and a history with eval/fid."""
    for alpha, values in sw1.items():
        for seed, v in enumerate(values):
            cell = root / f"alpha={alpha:g},seed={seed}"
            diag = {"alpha_star_scalar": 0.6 + 0.1 * seed, "kappa": 0.9} if diagnostics else None
            write_record(cell, make_record(status="completed", task="dgmm", dataset="dgmm", dim=3, alpha=alpha,
                                           seed=seed, tangent={"name": "oracle"}, anchor_weight=0.0, adaptive_p=1.0,
                                           steps=10, wall_s=0.1, metrics={"sw1": v, "sw2": v}, diagnostics=diag))
            if diagnostics:
                (cell / "history.csv").write_text(f"step,eval/fid\n5,{10 + alpha + seed}\n10,{5 + alpha + seed}\n")


def test_ties_go_to_the_smaller_alpha(tmp_path):
    _synthetic(tmp_path, {0.2: [0.5, 0.7], 0.7: [0.7, 0.5], 0.9: [0.1]})
    (setting,) = group_settings(alpha_rows(collect(tmp_path)))
    assert best_alpha(setting) == 0.2  # 0.9 is lower but has one seed of two: missing


def test_optional_sections_follow_the_data(tmp_path):
    _synthetic(tmp_path, {0.0: [0.5, 0.6], 1.0: [0.4, 0.5]}, diagnostics=True)
    report = build_report(tmp_path)
    titles = [s.title for s in report.sections]
    assert "Diagnostics" in titles and "FID" in titles and "Final samples" not in titles  # dim 3
    diag = report.tables["diagnostics"]
    assert diag.columns[3:] == ["alpha_star_scalar"]  # kappa is 0.9 everywhere: said, not shown as a column
    assert diag.note == "kappa is 0.9 in every cell (not shown as columns)."
    assert diag.rows[0]["alpha_star_scalar"]["mean"] == pytest.approx(0.65)
    assert diag.rows[0]["kappa"]["mean"] == pytest.approx(0.9)
    assert {"alpha_star", "fid_vs_step"} <= set(report.figures)
    fid = {(r["step"]): r["alpha = 1"] for r in report.tables["fid_steps"].rows}
    assert fid == {5: pytest.approx(11.5), 10: pytest.approx(6.5)}  # mean over seeds 0, 1
    # The DiT's FID checkpoints make the same matched-step table: alpha 1 is 1 worse than 0 at both steps.
    matched = report.matched["dgmm"]
    assert matched.key == "eval/fid" and [(v.step, v.best, v.against) for v in matched.steps] == [(5, 0, 1), (10, 0, 1)]
    assert matched.steps[0].difference.mean == pytest.approx(1.0) and matched.steps[0].difference.sem == 0
    assert matched.stability == "only one checkpoint (step 10) in the last third of training: stability cannot be judged"


def test_loss_keys_that_vary_with_alpha_are_named(tmp_path):
    _synthetic(tmp_path, {0.0: [0.5], 1.0: [0.4]})
    for alpha, offset in ((0, 0.02), (1, 0.05)):
        (tmp_path / f"alpha={alpha},seed=0" / "config.yaml").write_text(
            f"loss:\n  anchor_weight: 0.0\n  offset: {offset}\n")
    table = build_report(tmp_path).tables["settings"]
    assert table.rows[0]["loss keys held fixed across alpha"] == {"anchor_weight": 0.0}
    assert table.rows[0]["loss keys that vary with alpha"] == {"offset": {0.0: [0.02], 1.0: [0.05]}}
    # written below the table (its note), not as a column: long loss keys ran off the page
    assert "held fixed across alpha anchor_weight=0.0; varying with alpha offset: 0.02 at alpha=0, 0.05 at alpha=1." \
        in table.note
    assert "loss keys held fixed across alpha" not in table.columns


def test_folders_that_differ_in_a_key_the_record_lacks_are_two_settings(tmp_path):
    """Without a plan, two folders whose records agree on every setting key are told apart by their folders."""
    _synthetic(tmp_path / "steps=10", {0.0: [0.5]})
    _synthetic(tmp_path / "steps=20", {0.0: [0.4]})
    settings = group_settings(alpha_rows(collect(tmp_path)))
    assert [s.label for s in settings] == ["dgmm folder=steps=10", "dgmm folder=steps=20"]
    assert [s.rows[0].stats["sw1"][0] for s in settings] == [0.5, 0.4]


def test_cli_exits_2_naming_a_bad_folder(tmp_path, capsys):
    assert main([str(tmp_path / "nowhere")]) == 2
    assert str(tmp_path / "nowhere") in capsys.readouterr().err
    assert main([str(tmp_path)]) == 2
    assert f"no result.json below {tmp_path}" in capsys.readouterr().err


def test_cli_prints_the_verdict_within_100_columns(broken, capsys, monkeypatch):
    monkeypatch.chdir(broken.parent)
    assert main([str(broken)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"Sweep {broken.name}: 6 cells: 3 completed")
    assert ("Verdict (paired over seeds; the answer from simultaneous 95% intervals):\n- swiss_roll: unresolved: "
            in out) and "- Unadjusted, as in the paper: swiss_roll: alpha = 0 is the only alpha" in out
    assert f"wrote {broken.name}/summary.csv, {broken.name}/verdict.json, " in out
    assert "Best alpha against alpha = 0" in out and "Cells that did not complete" in out
    assert f"report: {broken.name}/report.html" in out and str(broken.parent) not in out  # relative paths
    assert max(len(line) for line in out.splitlines()) <= 100


def test_markdown_captions_escape_their_asterisks(tmp_path):
    _synthetic(tmp_path, {0.0: [0.5, 0.6], 1.0: [0.4, 0.5]}, diagnostics=True)
    write_report(build_report(tmp_path))
    md = (tmp_path / "report.md").read_text()
    assert "*Predicted alpha\\* (mean ± SEM" in md
    for line in md.splitlines():  # an italic caption opens and closes once: no stray unescaped asterisk
        if line.startswith("*") and not line.startswith("**"):
            assert len(re.findall(r"(?<!\\)\*", line)) == 2, line


def test_alpha_colours_read_on_white():
    """WCAG contrast of every alpha's colour against white is at least 3:1 (graphics), so no light lime."""
    from mfsweep.report.plots import alpha_color

    def luminance(rgb):
        c = np.array(rgb[:3])
        c = np.where(c <= 0.03928, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
        return 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2]

    contrasts = [1.05 / (luminance(alpha_color(a)) + 0.05) for a in np.linspace(0, 1, 11)]
    assert min(contrasts) >= 3.0 and contrasts[-1] < contrasts[0]


def test_each_format_writes_the_emphasis_legend_in_its_own_marker():
    from mfsweep.report.table import Table

    table = Table("t", ["a", "b"], [{}], [["0.1", "0.2"]], bold={(0, 1)}, note="Extra.", bold_means="the best.")
    assert table.text().endswith("*...*: the best. Extra.") and "*0.2*" in table.text()
    assert table.markdown().endswith("Bold: the best. Extra.") and "**0.2**" in table.markdown()
    assert "<p class='note'>Bold: the best. Extra.</p>" in table.html()
    assert Table("t", ["a"], [{}], [["0.1"]], note="Extra.", bold_means="the best.").text().endswith("\nExtra.")


def test_diagnostics_that_say_nothing_are_named_not_shown(tmp_path):
    from mfsweep.report.table import diagnostics_table

    _synthetic(tmp_path, {0.0: [0.5, 0.6], 1.0: [0.4, 0.5]})
    for p in tmp_path.rglob("result.json"):
        rec = read_record(p.parent)
        bias = 0.1 * rec["seed"] + rec["alpha"]
        rec["diagnostics"] |= {"alpha_star_scalar": 1.0, "bias2": bias, "bias2_ema_gap": bias, "kappa": bias + 1}
        write_record(p.parent, rec)
    settings = group_settings(alpha_rows(collect(tmp_path)))
    table = diagnostics_table(settings, ["alpha_star_scalar", "bias2", "bias2_ema_gap", "kappa"])
    assert table.columns[3:] == ["bias2", "kappa"]
    assert table.note == ("alpha_star_scalar is 1 in every cell; bias2_ema_gap equals bias2 in every cell "
                          "(not shown as columns).")
    assert table.rows[1]["bias2_ema_gap"]["mean"] == pytest.approx(1.05)  # the rows keep every key


def test_a_schedule_and_another_proxy_are_settings_beside_the_constant_grid(tmp_path):
    """One folder tree: a constant-alpha grid, a cosine schedule (its row at its trajectories' mean alpha) and
    the velocity head at alpha 1; the settings table and the verdict show each as its own row."""
    _synthetic(tmp_path / "grid", {0.0: [0.5, 0.6], 1.0: [0.4, 0.5]})
    cosine = {"name": "cosine", "start": 0.0, "end": 1.0, "begin": 0, "end_step": 10}
    for seed, (mean, sw1) in enumerate([(0.45, 0.3), (0.55, 0.35)]):
        write_record(tmp_path / "alpha=cosine" / f"seed={seed}", make_record(
            status="completed", task="dgmm", dataset="dgmm", dim=3, alpha=None, seed=seed, tangent={"name": "oracle"},
            anchor_weight=0.0, adaptive_p=1.0, steps=10, wall_s=0.1, metrics={"sw1": sw1, "sw2": sw1},
            alpha_schedule=cosine, alpha_trajectory={"start": 0.0, "end": 1.0, "mean": mean}))
        (tmp_path / "alpha=cosine" / f"seed={seed}" / "history.csv").write_text("step,train/alpha\n5,0.2\n10,0.8\n")
    head = {"name": "velocity_head", "loss_weight": 1.0}
    write_record(tmp_path / "tangent=velocity_head" / "alpha=1,seed=0", make_record(
        status="completed", task="dgmm", dataset="dgmm", dim=3, alpha=1.0, seed=0, tangent=head, anchor_weight=0.0,
        adaptive_p=1.0, steps=10, wall_s=0.1, metrics={"sw1": 0.2, "sw2": 0.2}))
    settings = {s.label: s for s in group_settings(alpha_rows(collect(tmp_path)))}
    # labels name the schedule and proxy by name while the names tell the settings apart
    assert sorted(settings) == [
        "dgmm alpha_schedule=constant tangent=oracle",
        "dgmm alpha_schedule=constant tangent=velocity_head",
        "dgmm alpha_schedule=cosine tangent=oracle"]
    (row,) = settings["dgmm alpha_schedule=cosine tangent=oracle"].rows
    assert (row.alpha, row.grid_alpha, row.seeds, row.count("completed")) == (pytest.approx(0.5), None, [0, 1], 2)
    assert row.stats["sw1"][0] == pytest.approx(0.325)
    report = build_report(tmp_path)
    labels = [r["setting"] for r in report.tables["settings"].rows]
    assert len(labels) == 3 and any("cosine" in label for label in labels)
    assert "cosine" in report_text(report) and "velocity_head" in report_text(report)
    assert "alpha_curves" in report.figures  # the schedule's alpha along training; the grid has none
    (text,) = [v.sentence() for v in report.verdicts if "cosine" in v.setting]
    assert "an alpha schedule (mean alpha 0.5): SW1 0.325" in text
    # ... and against the grid beside it, paired by seed: 0.3 - 0.5 and 0.35 - 0.6
    (cosine,) = [m for m in report.compared if m.method == "cosine"]
    assert (cosine.vs_zero.mean, cosine.vs_zero.n) == (pytest.approx(-0.225), 2)
    assert any(t.startswith("dgmm: cosine: SW1 0.325 ± 0.025 over 2 seeds") for t in report.sections[0].text)
