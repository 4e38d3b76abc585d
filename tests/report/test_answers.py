"""The four answers on hand-built per-seed data, the simultaneous interval against a hand computation, and the
repeated-looks spending (docs/method.md 7)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats

from mfsweep.report.answers import ANSWERS, critical, decide, spent


def _values(zero: list[float], diffs: dict[float, list[float]]) -> dict[float, dict[int, float]]:
    """alpha = 0's per-seed metric and, per other alpha, its per-seed difference to it."""
    out = {0.0: dict(enumerate(zero))}
    for a, d in diffs.items():
        out[a] = {s: z + x for s, (z, x) in enumerate(zip(zero, d))}
    return out


ZERO = [0.060, 0.062, 0.058, 0.061, 0.059, 0.060]


def test_simultaneous_interval_is_the_bonferroni_t_interval_by_hand():
    # two alphas, 4 seeds, differences 1, 2, 3, 6 (alpha 0.5) and 0, 0, 0, 0.4 (alpha 1)
    v = _values([10.0, 10.0, 10.0, 10.0], {0.5: [1.0, 2.0, 3.0, 6.0], 1.0: [0.0, 0.0, 0.0, 0.4]})
    a = decide(v, margin=100.0)
    c = a.comparison(0.5)
    mean, sd = 3.0, np.sqrt(14 / 3)                          # (4 + 1 + 0 + 9) / 3
    t = 4.1765                                                  # t_{1 - 0.05/4, 3} from a table: 2 alphas
    assert c.mean == pytest.approx(mean) and c.sd == pytest.approx(sd)
    assert c.simultaneous == pytest.approx((mean - t * sd / 2, mean + t * sd / 2), abs=2e-4)
    u = 3.1824                                                  # t_{0.975, 3}: the paper-style interval
    assert c.unadjusted == pytest.approx((mean - u * sd / 2, mean + u * sd / 2), abs=2e-4)
    assert critical(4, 2) == pytest.approx(stats.t.ppf(1 - 0.05 / 4, 3))


def test_better_when_the_best_alphas_simultaneous_interval_is_below_zero():
    v = _values(ZERO, {0.5: [-0.010, -0.011, -0.009, -0.010, -0.012, -0.008],
                       1.0: [0.001, -0.001, 0.002, 0.000, -0.002, 0.001]})
    a = decide(v, margin=0.0012, setting="two_moons")
    assert (a.answer, a.best_alpha, a.seeds_needed) == ("better", 0.5, None)
    assert a.worse == (1.0,)  # its interval against the best (0.5) lies above zero
    s = a.sentence()
    assert s.startswith("two_moons: better: alpha = 0.5 lowers SW1 by 0.01 (17% of SW1 at alpha = 0), simultaneous 95% "
                        "interval [")
    assert "over 2 alphas (unadjusted paired t [" in s and s.endswith("; 6 seeds per alpha.")


def test_a_gain_inside_the_margin_is_better_first_and_says_so():
    v = _values(ZERO, {0.5: [-0.0005, -0.0006, -0.0004, -0.0005, -0.0005, -0.0005]})
    a = decide(v, margin=0.0012)
    assert a.answer == "better"  # precedence: better over equivalent
    assert "a gain smaller than the margin ±0.0012" in a.sentence()


def test_equivalent_when_every_alpha_is_within_the_margin():
    v = _values(ZERO, {0.5: [0.0002, -0.0001, 0.0000, 0.0001, -0.0002, 0.0001],
                       1.0: [-0.0001, 0.0002, -0.0002, 0.0000, 0.0001, -0.0001]})
    a = decide(v, margin=0.0012, setting="swiss_roll")
    assert (a.answer, a.best_alpha, a.worse) == ("equivalent", 1.0, ())
    assert a.sentence().startswith("swiss_roll: equivalent (flat): every alpha within ±0.0012 of alpha = 0 (95% "
                                   "simultaneous; the widest bound ")
    # the same data with a margin narrower than the intervals: not flat any more
    assert decide(v, margin=0.0002).answer == "unresolved"


def test_no_better_when_none_gains_the_margin_and_one_is_worse():
    v = _values(ZERO, {0.5: [0.0002, -0.0001, 0.0000, 0.0001, -0.0002, 0.0001],
                       1.0: [0.0050, 0.0045, 0.0052, 0.0048, 0.0051, 0.0049]})
    a = decide(v, margin=0.0012, setting="two_spirals")
    assert (a.answer, a.best_alpha, a.worse) == ("no_better", None, (1.0,))  # alpha = 0 has the lowest mean
    assert a.sentence().startswith("two_spirals: no_better: no alpha lowers SW1 by more than the margin ±0.0012, "
                                   "and alpha = 1 is worse by 0.0049 (simultaneous 95% interval [")


def test_unresolved_says_the_seeds_a_fixed_grid_would_need():
    v = _values(ZERO[:3], {0.5: [-0.003, 0.001, -0.004], 1.0: [0.002, -0.003, 0.004]})
    a = decide(v, margin=0.0012, setting="pinwheel")
    assert a.answer == "unresolved" and a.best_alpha == 0.5
    assert a.seeds_needed is not None and a.seeds_needed > 3
    # at that many seeds, with the same mean and spread, a fixed grid resolves: check one step below it does not
    c = a.comparison(0.5)
    def resolves(n):
        half = critical(n, 2) * c.sd / np.sqrt(n)
        return c.mean + half < 0
    assert resolves(a.seeds_needed) and not resolves(a.seeds_needed - 1)
    assert f"a fixed grid would need about {a.seeds_needed} seeds per alpha" in a.sentence()
    assert a.sentence().startswith("pinwheel: unresolved: lowest mean SW1 at alpha = 0.5 (simultaneous 95% interval")


def test_alpha_zero_best_gives_no_best_alpha_and_worse_never_holds_zero():
    v = _values(ZERO, {0.5: [0.0050, 0.0045, 0.0052, 0.0048, 0.0051, 0.0049]})
    a = decide(v, margin=0.0012)
    assert a.best_alpha is None and a.worse == (0.5,) and 0.0 not in a.worse


def test_every_answer_is_one_of_the_four_and_json_round_trips():
    v = _values(ZERO, {0.5: [-0.010, -0.011, -0.009, -0.010, -0.012, -0.008], 1.0: [0.0] * 6})
    d = json.loads(json.dumps(decide(v, margin=0.0012, setting="s").to_dict()))
    assert d["answer"] in ANSWERS and d["rounds"] == 1 and d["seeds"] == [
        {"alpha": 0.0, "seeds": 6}, {"alpha": 0.5, "seeds": 6}, {"alpha": 1.0, "seeds": 6}]
    iv = d["intervals"][0]
    assert iv["alpha"] == 0.5 and iv["simultaneous"][0] < iv["unadjusted"][0] < iv["unadjusted"][1] < 0
    assert iv["simultaneous"][1] > iv["unadjusted"][1]  # two alphas: the family-wise interval is the wider


def test_deterministic():
    rng = np.random.default_rng(3)
    v = {a: {s: float(rng.normal()) for s in range(6)} for a in (0.0, 0.1, 0.2)}
    assert decide(v, margin=0.5, look=2, max_looks=4) == decide(v, margin=0.5, look=2, max_looks=4)


def test_looks_spend_the_level_once_and_early_looks_are_stricter():
    assert sum(spent(k, 4) for k in range(1, 5)) == pytest.approx(0.05)
    assert spent(1, 1) == pytest.approx(0.05)
    assert critical(6, 10, 2, 4) > critical(6, 10, 1, 1)
    # a raced alpha dropped after round 1 keeps round 1's critical value at later looks
    rng = np.random.default_rng(0)
    v = {a: {s: float(rng.normal()) for s in range(12 if a in (0.0, 0.5) else 3)} for a in (0.0, 0.5, 1.0)}
    c = decide(v, margin=0.5, look=4, max_looks=4).comparison(1.0)
    d = np.array([v[1.0][s] - v[0.0][s] for s in range(3)])
    half = critical(3, 2, 1, 4) * d.std(ddof=1) / np.sqrt(3)
    assert c.look == 1 and c.simultaneous == pytest.approx((d.mean() - half, d.mean() + half))


@pytest.mark.parametrize("values, kwargs, message", [
    ({0.5: {0: 1.0}}, {"margin": 0.1}, "no alpha = 0.0"),
    ({0.0: {0: 1.0}}, {"margin": 0.1}, "only alpha = 0.0"),
    ({0.0: {0: 1.0}, 0.5: {0: 1.0}}, {"margin": 0.0}, "margin must be a positive number (verdict.margin)"),
    ({0.0: {0: 1.0}, 0.5: {0: 1.0}}, {"margin": 0.1, "look": 3, "max_looks": 2}, "look must be in 1..max_looks"),
])
def test_bad_input_is_one_clear_line(values, kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        decide(values, **kwargs)
