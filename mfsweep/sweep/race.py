"""Sweeps that run until their answer is resolved (`sweep.until=resolved`): rounds of new seeds, racing alphas.

Round 1 trains the command line's grid (its `seed=` list). After each round every setting still racing gets its
answer from the records (`mfsweep.report.answers.decide`, on the report's aggregation: SW1, or FID for the
latent task); a setting stops when resolved, when its alpha = 0 has `sweep.max_seeds` seeds, or when alpha = 0
is the only alpha left; an alpha the answer finds distinguishably worse than the current best gets no more
seeds (alpha = 0 always stays). Round k's seeds are the next `sweep.round_seeds` integers after every seed used
so far (fewer in a last round that reaches `sweep.max_seeds`).

The keys are checked by `check_race` below; a round is decided from the records by
mfsweep/report/rounds.py; the sweeper (hydra_plugins/mfsweep_sweeper) runs the rounds. Each round's decisions
are kept in plan.json under `race` (written atomically with the plan), and a relaunch replays them instead of
deciding again, so a round is decided once, whatever happens to the records later:

    race = {"spec": {...}, "rounds": [{"round": 1, "seeds": [0, 1, 2], "started": ..., "decided": ...,
            "settings": {"dataset=swiss_roll": {"alphas": [0.0, 0.5, 1.0], "answer": {...},
                                                "dropped": [1.0], "stop": null}}}]}
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from mfsweep.method.errors import ConfigValueError
from mfsweep.sweep.cells import GRID_KEYS, override_key
from mfsweep.sweep.record import round_alpha

UNTIL = ("grid", "resolved")
STOPS = {"resolved": "resolved", "max_seeds": "unresolved at sweep.max_seeds", "alone": "alpha = 0 alone left"}


@dataclass(frozen=True)
class RaceSpec:
    """What a race is: its alpha grid, round 1's seeds, the round size and cap, and the equivalence margin."""

    alphas: tuple[float, ...]
    first_seeds: tuple[int, ...]
    round_seeds: int
    max_seeds: int
    margin: float  # verdict.margin: a share of alpha = 0's mean metric

    @property
    def max_looks(self) -> int:
        """The planned looks: round 1, then rounds of `round_seeds` until `max_seeds` seeds."""
        return 1 + math.ceil(max(0, self.max_seeds - len(self.first_seeds)) / self.round_seeds)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"alphas": list(self.alphas), "first_seeds": list(self.first_seeds),
                               "max_looks": self.max_looks}


# ---------------------------------------------------------------------------------------------------------
# The bookkeeping: pure functions of plan.json's `race`
# ---------------------------------------------------------------------------------------------------------

def used_seeds(race: dict[str, Any]) -> list[int]:
    return sorted({s for r in race["rounds"] for s in r["seeds"]})


def next_round(race: dict[str, Any], settings: Iterable[str]) -> tuple[list[int], dict[str, list[float]]] | None:
    """Round k+1 after the decided rounds of `race`: its seeds and, per setting still racing, the alphas that get
    them; None when every setting has stopped. `settings`: the race's settings (their folders), for round 1."""
    spec, rounds = race["spec"], race["rounds"]
    if not rounds:
        return list(spec["first_seeds"]), {s: list(spec["alphas"]) for s in settings}
    racing = {s: [a for a in d["alphas"] if a not in d["dropped"]]
              for s, d in rounds[-1]["settings"].items() if d["stop"] is None}
    used = used_seeds(race)
    n = min(spec["round_seeds"], spec["max_seeds"] - len(used))
    if not racing or n <= 0:
        return None
    return list(range(max(used) + 1, max(used) + 1 + n)), racing


def settle(alphas: Sequence[float], answer: dict[str, Any], seeds: int, max_seeds: int) -> dict[str, Any]:
    """One setting's round decided: the alphas it raced, its answer, the alphas dropped (worse than the best;
    never alpha = 0) and why it stops (None: it goes on). `seeds`: its alpha = 0's seeds so far."""
    dropped = [a for a in alphas if a in answer["worse"] and a != 0.0]
    left = [a for a in alphas if a not in dropped]
    stop = ("resolved" if answer["answer"] != "unresolved" else "max_seeds" if seeds >= max_seeds
            else "alone" if left == [0.0] else None)
    return {"alphas": list(alphas), "answer": answer, "dropped": dropped, "stop": stop}


def seeds_per_alpha(race: dict[str, Any], setting: str) -> dict[float, int]:
    """How many seeds each alpha of `setting` has had, over the race's rounds."""
    out: dict[float, int] = {a: 0 for a in race["spec"]["alphas"]}
    for r in race["rounds"]:
        for a in r["settings"].get(setting, {}).get("alphas", []):
            out[a] += len(r["seeds"])
    return out


def dropped_when(race: dict[str, Any], setting: str) -> dict[float, int]:
    """{alpha: the round after which it got no more seeds}."""
    return {a: r["round"] for r in race["rounds"] for a in r["settings"].get(setting, {}).get("dropped", [])}


def race_looks(race: dict[str, Any] | None, setting: str | None) -> tuple[int, int]:
    """(look, max_looks) of a setting's answer: the rounds it raced and the race's planned looks; (1, 1) for a
    fixed grid or a setting the race does not hold."""
    if not race or setting not in race["settings"]:
        return 1, 1
    rounds = sum(1 for r in race["rounds"] if setting in r["settings"])
    return max(1, rounds), race["spec"]["max_looks"]


def race_seeds(race: dict[str, Any], setting: str, upto: int) -> dict[float, set[int]]:
    """The seeds each alpha of `setting` raced with in rounds 1..`upto`."""
    out: dict[float, set[int]] = {}
    for r in race["rounds"][:upto]:
        for a in r["settings"].get(setting, {}).get("alphas", []):
            out.setdefault(a, set()).update(r["seeds"])
    return out


# ---------------------------------------------------------------------------------------------------------
# The settings of a race and their jobs
# ---------------------------------------------------------------------------------------------------------

def setting_overrides(entries: Iterable[dict[str, Any]]) -> dict[str, list[str]]:
    """Per setting folder, the overrides of a job that trains just that setting (alpha and seed left out): its
    job's overrides with each packed per-member list replaced by the setting's own value."""
    out: dict[str, list[str]] = {}
    for e in entries:
        folder = str(Path(e["dir"]).parent)
        if folder in out:
            continue
        own = []
        for o in e["overrides"]:
            key = override_key(o)
            if key in GRID_KEYS:
                continue
            prefix = o[:len(o) - len(o.lstrip("+~"))]
            own.append(f"{prefix}{key}={e['setting'][key]}" if key in e["setting"] else o)
        out[folder] = own
    return out


def round_jobs(overrides: dict[str, list[str]], seeds: list[int], alphas: dict[str, list[float]]) -> list[str]:
    """Each racing setting's overrides for a round, as one command-line sweep each (`alpha.value=0.0,0.5
    seed=3,4,5`): the sweeper expands (or, in packed mode, packs) them as it would the user's."""
    return [[*overrides[s], f"alpha.value={','.join(f'{a!r}' for a in alphas[s])}",
             f"seed={','.join(str(x) for x in seeds)}"] for s in sorted(alphas)]


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S")


# ---------------------------------------------------------------------------------------------------------
# What status and the report say
# ---------------------------------------------------------------------------------------------------------

def race_lines(race: dict[str, Any], cells: Sequence[Any]) -> list[str]:
    """The race in words: its rounds, and per setting its answer, seeds per alpha, dropped alphas (and when) and
    the cells trained against the fixed 3- and 6-seed grids. `cells`: the plan's cells with their records
    (states.planned_cells), for the settings' labels and the cell-steps."""
    from mfsweep.sweep.plan import overrides_label, varying

    spec, rounds = race["spec"], race["rounds"]
    wall = sum(_seconds(r["started"], r["decided"]) for r in rounds if r.get("started") and r.get("decided"))
    lines = [f"race (sweep.until=resolved): {len(rounds)} round{'s' * (len(rounds) != 1)} decided of at most "
             f"{spec['max_looks']} (round 1: seed {_seeds(spec['first_seeds'])}, then {spec['round_seeds']} new "
             f"seed{'s' * (spec['round_seeds'] != 1)} a round up to {spec['max_seeds']}); "
             f"{wall / 60:.1f} min from round 1's start to the last decision"]
    steps: dict[str, list[int]] = {}
    keys: dict[str, dict[str, str]] = {}
    for c in cells:
        folder = str(Path(c.entry["dir"]).parent)
        keys.setdefault(folder, c.entry["setting"])
        if c.record is not None and c.record.get("steps") is not None:
            steps.setdefault(folder, []).append(int(c.record["steps"]))
    shown = varying(keys.values())
    n = len(spec["alphas"])
    for s in race["settings"]:
        decided = [r for r in rounds if s in r["settings"]]
        label = overrides_label(keys[s], shown) if s in keys else s
        if not decided:
            lines.append(f"  {label}: round 1 not decided yet")
            continue
        last = decided[-1]
        d = last["settings"][s]
        state = (f"{STOPS[d['stop']]} after round {last['round']}" if d["stop"]
                 else f"racing (round {last['round']} decided)")
        best = "" if d["answer"].get("best_alpha") is None else f", best alpha {d['answer']['best_alpha']:g}"
        lines.append(f"  {label}: {d['answer']['answer']}{best} on {(d.get('metric') or '-').upper()}; {state}")
        per = seeds_per_alpha(race, s)
        lines.append("    seeds per alpha: " + ", ".join(f"{a:g}: {k}" for a, k in per.items()))
        if drops := dropped_when(race, s):
            lines.append("    dropped: " + ", ".join(f"alpha {a:g} after round {k}" for a, k in sorted(drops.items())))
        # From the records, like the cell-steps: a round still training has cells of an undecided round.
        cost = f"    cells trained: {len(steps.get(s, []))} (fixed grids: {3 * n} at 3 seeds, {6 * n} at 6)"
        if s in steps:
            most = max(steps[s])
            cost += (f"; cell-steps {sum(steps[s]):,} (fixed grids of {most:,} steps: {3 * n * most:,} at 3 seeds, "
                     f"{6 * n * most:,} at 6)")
        lines.append(cost)
    return lines


def _seeds(seeds: Sequence[int]) -> str:
    return ",".join(str(s) for s in seeds)


def _seconds(start: str, end: str) -> float:
    fmt = "%Y-%m-%dT%H:%M:%S"
    return time.mktime(time.strptime(end, fmt)) - time.mktime(time.strptime(start, fmt))


def check_race(schedule: str, alphas: Sequence[Any], seeds: Sequence[Any], round_seeds: Any, max_seeds: Any,
               margin: Any) -> RaceSpec:
    """The race the command line asks for (`schedule`: the alpha group's `_target_`), or ConfigValueError naming the
    key (before anything is written)."""
    if not schedule.endswith(".ConstantAlpha"):
        raise ConfigValueError("alpha", f"sweep.until=resolved races a constant-alpha grid (alpha=constant), got {schedule}")
    if not isinstance(round_seeds, int) or isinstance(round_seeds, bool) or round_seeds < 1:
        raise ConfigValueError("sweep.round_seeds", f"must be an integer >= 1, got {round_seeds!r}")
    if not isinstance(max_seeds, int) or isinstance(max_seeds, bool) or max_seeds < round_seeds:
        raise ConfigValueError("sweep.max_seeds", f"must be an integer >= sweep.round_seeds ({round_seeds}), "
                                             f"got {max_seeds!r}")
    try:
        grid = sorted({round_alpha(float(a)) for a in alphas})
    except (TypeError, ValueError):
        grid = []
    if len(grid) < 2 or 0.0 not in grid:
        raise ConfigValueError("alpha.value", "sweep.until=resolved races alphas against alpha = 0: give a constant-alpha "
                                         f"grid containing 0 and another alpha (alpha.value=0.0,0.5,1.0), got {list(alphas)}")
    if not seeds or any(not isinstance(s, int) or isinstance(s, bool) or s < 0 for s in seeds) \
            or len(set(seeds)) != len(seeds):
        raise ConfigValueError("seed", f"sweep.until=resolved needs distinct integer seeds >= 0 for round 1, got {list(seeds)}")
    if len(seeds) > max_seeds:
        raise ConfigValueError("sweep.max_seeds", f"round 1 already has {len(seeds)} seeds (seed=...), more than "
                                             f"sweep.max_seeds={max_seeds}")
    return RaceSpec(tuple(grid), tuple(int(s) for s in seeds), round_seeds, max_seeds, margin)  # margin: validate()


def check_same_race(root: Any, held: dict[str, Any], asked: dict[str, Any]) -> None:
    """A relaunch into a race's folder must be the same race (its spec and settings), or its decided rounds
    would be replayed for another question."""
    if held != asked:
        raise ConfigValueError("hydra.sweep.dir", f"{root} holds a race of another command (plan.json's `race`): relaunch "
                                             "that command, or race into a new folder")
