"""The race's bookkeeping (sweep.until=resolved): which settings and alphas get which seeds in round k, from
decided rounds written by hand; a round decided from synthetic records equals answers.decide on exactly the
race's own cells; the bad combinations of keys, each one line naming its key before anything is written; and a tiny race on the command line (two rounds, status, a relaunch that replays
the decided rounds). Its resume after a scancel on the real local SLURM: test_slurm_race.py."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from commands import ALPHAS, RACE, launch

from mfsweep.cli.status import main as status_main

from mfsweep.method.errors import ConfigValueError
from mfsweep.cli.preflight import preflight
from mfsweep.config import CONF_DIR
from mfsweep.sweep.race import check_race
from mfsweep.report.answers import decide
from mfsweep.report.rounds import decide_round
from mfsweep.sweep.plan import read_plan, write_plan
from mfsweep.sweep.race import dropped_when, next_round, race_seeds, seeds_per_alpha, settle
from mfsweep.sweep.record import make_record, write_record



def _race(first=(0, 1, 2), round_seeds=3, max_seeds=12) -> dict:
    spec = check_race("mfsweep.method.schedule.ConstantAlpha", ALPHAS, list(first), round_seeds, max_seeds,
                      0.02).to_dict()
    return {"spec": spec, "settings": {"a": [], "b": []}, "rounds": []}


def _answer(answer="unresolved", worse=()) -> dict:
    return {"answer": answer, "best_alpha": 0.5, "worse": list(worse), "seeds": {}, "seeds_needed": None}


def _decided(race: dict, seeds: list[int], settings: dict[str, dict]) -> dict:
    return race | {"rounds": race["rounds"] + [{"round": len(race["rounds"]) + 1, "seeds": seeds,
                                                "settings": settings}]}


def test_round_one_is_the_command_lines_grid_then_next_seeds_for_the_alphas_still_racing():
    race = _race()
    assert next_round(race, ["a", "b"]) == ([0, 1, 2], {"a": ALPHAS, "b": ALPHAS})
    # a: alpha 1 worse than the best (dropped); b: resolved (stops). alpha = 0 is never dropped, even if named.
    race = _decided(race, [0, 1, 2], {"a": settle(ALPHAS, _answer(worse=[1.0, 0.0]), 3, 12),
                                      "b": settle(ALPHAS, _answer("equivalent"), 3, 12)})
    assert race["rounds"][0]["settings"]["a"]["dropped"] == [1.0]
    assert race["rounds"][0]["settings"]["b"]["stop"] == "resolved"
    assert next_round(race, ["a", "b"]) == ([3, 4, 5], {"a": [0.0, 0.5]})
    race = _decided(race, [3, 4, 5], {"a": settle([0.0, 0.5], _answer(), 6, 12)})
    assert next_round(race, ["a", "b"]) == ([6, 7, 8], {"a": [0.0, 0.5]})
    assert seeds_per_alpha(race, "a") == {0.0: 6, 0.5: 6, 1.0: 3}
    assert seeds_per_alpha(race, "b") == {0.0: 3, 0.5: 3, 1.0: 3}
    assert dropped_when(race, "a") == {1.0: 1} and dropped_when(race, "b") == {}
    assert race_seeds(race, "a", 2) == {0.0: {0, 1, 2, 3, 4, 5}, 0.5: {0, 1, 2, 3, 4, 5}, 1.0: {0, 1, 2}}


def test_seeds_follow_the_highest_used_and_the_last_round_stops_at_max_seeds():
    race = _race(first=(0, 7), round_seeds=3, max_seeds=6)
    assert race["spec"]["max_looks"] == 3  # 2 seeds, then 3, then the last 1
    race = _decided(race, [0, 7], {"a": settle(ALPHAS, _answer(), 2, 6)})
    assert next_round(race, ["a"]) == ([8, 9, 10], {"a": ALPHAS})
    race = _decided(race, [8, 9, 10], {"a": settle(ALPHAS, _answer(), 5, 6)})
    assert next_round(race, ["a"]) == ([11], {"a": ALPHAS})
    last = settle(ALPHAS, _answer(), 6, 6)
    assert last["stop"] == "max_seeds"
    assert next_round(_decided(race, [11], {"a": last}), ["a"]) is None


def test_a_setting_whose_every_other_alpha_is_worse_stops():
    d = settle(ALPHAS, _answer(worse=[0.5, 1.0]), 3, 12)
    assert (d["dropped"], d["stop"]) == ([0.5, 1.0], "alone")


def _records(root: Path, sw1: dict[float, dict[int, float]]) -> None:
    for alpha, values in sw1.items():
        for seed, v in values.items():
            write_record(root / "dataset=two_moons" / f"alpha={alpha:g},seed={seed}", make_record(
                status="completed", error=None, task="toy", dataset="two_moons", dim=2, alpha=alpha, seed=seed,
                tangent={"name": "ema", "ema_decay": 0.99}, anchor_weight=0.0, adaptive_p=0.0, steps=1000,
                wall_s=1.0, metrics={"sw1": v, "sw2": v}))


def test_a_round_is_decided_on_the_race_s_own_cells_only(tmp_path):
    rng = np.random.default_rng(0)
    base = {s: 0.05 + 0.01 * rng.standard_normal() for s in range(7)}
    sw1 = {0.0: {s: base[s] for s in range(6)},
           0.5: {s: base[s] + 0.0005 * rng.standard_normal() for s in range(6)},
           1.0: {s: base[s] + 0.5 for s in range(3)}}  # far worse; raced with seeds 0-2 only
    sw1[0.0][9] = 10.0  # an earlier grid's cell in the same folder: not the race's, so not counted
    _records(tmp_path, sw1)
    race = _decided(_race(), [0, 1, 2], {"dataset=two_moons": settle(ALPHAS, _answer(worse=[1.0]), 3, 12)})
    got = decide_round(tmp_path, race, [3, 4, 5], {"dataset=two_moons": [0.0, 0.5]})
    own = {0.0: {s: sw1[0.0][s] for s in range(6)}, 0.5: sw1[0.5], 1.0: sw1[1.0]}
    margin = 0.02 * np.mean([sw1[0.0][s] for s in range(6)])  # verdict.margin: a share of alpha = 0's mean SW1
    expected = decide(own, margin=margin, look=2, max_looks=4, metric="sw1", setting="dataset=two_moons").to_dict()
    (setting,) = got["settings"].values()
    assert (got["round"], got["seeds"]) == (2, [3, 4, 5])
    assert setting["answer"] == expected and setting["alphas"] == [0.0, 0.5] and setting["metric"] == "sw1"
    assert 1.0 in expected["worse"]


@pytest.mark.parametrize("args, key", [
    (["alpha.value=0.5,1.0", "seed=0,1"], "alpha.value"),                      # no alpha = 0 to race against
    (["alpha.value=0.0", "seed=0,1"], "alpha.value"),                          # nothing to race
    (["alpha.value=0.0,1.0", "sweep.round_seeds=3", "sweep.max_seeds=2"], "sweep.max_seeds"),
    (["alpha.value=0.0,1.0", "seed=0,1,2", "sweep.max_seeds=2", "sweep.round_seeds=1"], "sweep.max_seeds"),
    (["alpha.value=0.0,1.0", "sweep.round_seeds=0"], "sweep.round_seeds"),
    (["alpha=cosine"], "alpha"),
    (["alpha.value=0.0,1.0", "++verdict.margin=0"], "verdict.margin"),
])
def test_bad_race_keys_are_one_line_naming_the_key_before_anything_is_written(tmp_path, args, key):
    with pytest.raises(ConfigValueError) as err:
        preflight(CONF_DIR, ["-m", "sweep.until=resolved", *args, f"hydra.sweep.dir={tmp_path / 'sweep'}"])
    assert err.value.key == key and "\n" not in str(err.value)
    assert not (tmp_path / "sweep").exists()


def test_the_command_line_s_seeds_beat_a_sweep_file_s_as_in_hydra_s_own_jobs():
    """A sweep file's params come before the command line; the race's round 1 is the jobs' seeds, the last given."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra_plugins.mfsweep_sweeper.mfsweep_sweeper import swept_values

    parsed = OverridesParser.create().parse_overrides(["seed=0,1,2,3,4,5", "alpha.value=0.0,0.5", "seed=0,1,2"])
    assert swept_values(parsed, "seed", 7) == [0, 1, 2]
    assert swept_values(parsed, "alpha.value", 0.0) == [0.0, 0.5]
    assert swept_values(parsed[:1], "trainer.lr", [1e-3]) == [1e-3]


def test_a_race_needs_a_multirun():
    with pytest.raises(ConfigValueError, match="-m") as err:
        preflight(CONF_DIR, ["sweep.until=resolved", "alpha.value=0.0"])
    assert err.value.key == "sweep.until"
    with pytest.raises(ConfigValueError) as err:
        preflight(CONF_DIR, ["-m", "sweep.until=forever", "alpha.value=0.0,1.0"])
    assert err.value.key == "sweep.until"


# ---------------------------------------------------------------------------------------------------------
# A tiny race on the command line: 2 rounds of one seed (one seed decides nothing, so round 2 always runs)
# ---------------------------------------------------------------------------------------------------------



@pytest.fixture(scope="module")
def raced(tmp_path_factory) -> tuple[Path, int, str]:
    root = tmp_path_factory.mktemp("race") / "sweep"
    rc, out = launch(root, *RACE)
    return root, rc, out


def _cells(root: Path) -> set[tuple[float, int]]:
    return {(r["alpha"], r["seed"]) for r in (json.loads(p.read_text()) for p in root.rglob("result.json"))}


def test_a_race_on_the_cli_runs_its_rounds_and_says_so(raced, capsys):
    root, rc, out = raced
    assert rc == 0, out[-3000:]
    race = read_plan(root)["race"]
    (setting,) = race["settings"]
    rounds = race["rounds"]
    assert [r["seeds"] for r in rounds] == [[0], [1]]
    assert rounds[0]["settings"][setting]["answer"]["answer"] == "unresolved"  # one seed: no spread to judge
    assert rounds[0]["settings"][setting]["stop"] is None and rounds[1]["settings"][setting]["stop"] is not None
    assert rounds[1]["settings"][setting]["alphas"] == ALPHAS
    assert _cells(root) == {(a, s) for a in ALPHAS for s in (0, 1)}
    assert status_main([str(root)]) == 0
    text = capsys.readouterr().out
    assert "race (sweep.until=resolved): 2 rounds decided of at most 2" in text
    assert "dataset=two_moons: " in text and "seeds per alpha: 0: 2, 0.5: 2, 1: 2" in text
    assert "cells trained: 6 (fixed grids: 9 at 3 seeds, 18 at 6); cell-steps 120" in text
    assert "race (sweep.until=resolved)" in out  # the launch ends with the same status


def test_a_relaunch_replays_the_decided_rounds_and_never_decides_them_again(raced):
    root, rc, _ = raced
    assert rc == 0
    # As if round 1 had dropped alpha 1 and the launch had stopped before round 2 was decided: the relaunch must
    # take round 1 as written (not recompute it from the records), so round 2 trains alphas 0 and 0.5 only.
    plan = read_plan(root)
    (setting,) = plan["race"]["settings"]
    first = plan["race"]["rounds"][0]
    first["settings"][setting] |= {"dropped": [1.0], "answer": first["settings"][setting]["answer"] | {"worse": [1.0]}}
    plan["race"]["rounds"] = [first]
    write_plan(root, plan)
    for p in root.rglob("*seed=1"):
        shutil.rmtree(p)
    rc, out = launch(root, *RACE)
    assert rc == 0, out[-3000:]
    race = read_plan(root)["race"]
    assert race["rounds"][0] == first
    assert race["rounds"][1]["settings"][setting]["alphas"] == [0.0, 0.5]
    assert _cells(root) == {(a, 0) for a in ALPHAS} | {(0.0, 1), (0.5, 1)}
    assert "dropped: alpha 1 after round 1" in out
    # A finished race relaunched trains nothing and keeps its decisions.
    rc, again = launch(root, *RACE)
    assert rc == 0 and "Launching" not in again and read_plan(root)["race"] == race, again[-3000:]


def test_a_race_into_a_folder_of_another_race_is_refused(raced):
    root, _, _ = raced
    rc, out = launch(root, *[a if not a.startswith("sweep.max_seeds") else "sweep.max_seeds=3" for a in RACE])
    assert rc != 0 and "config key 'hydra.sweep.dir'" in out and "another command" in out, out[-3000:]
