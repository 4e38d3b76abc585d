"""Alpha schedules (mfsweep/method/schedule.py): values against hand computations, per-member keys, the
adaptive schedules against the closed-form alpha* of docs/method.md 4, checks naming the key, the group
YAMLs, and the structural check of issue 12 (a new schedule is one module plus one YAML)."""
from __future__ import annotations

import inspect
import math
import textwrap
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from conftest import group_yaml

from mfsweep.method.component import ConfigValueError
from mfsweep.method.schedule import (
    AdaptiveAlpha,
    AdaptiveHAlpha,
    AlphaSchedule,
    ConstantAlpha,
    CosineAlpha,
    LinearAlpha,
    SigmoidAlpha,
    StepAlpha,
)
from mfsweep.method.theory import c_from_jacobian
from mfsweep.config.build import build_schedule

CONF = Path(__file__).resolve().parents[2] / "conf"
BUILT_IN = ("constant", "linear", "cosine", "sigmoid", "step", "adaptive", "adaptive_h")
YAMLS = sorted(p.stem for p in (CONF / "alpha").glob("*.yaml"))  # a new YAML is tested too


def values(schedule: AlphaSchedule, steps: list[int]) -> list[list[float]]:
    return [schedule.alpha(s).tolist() for s in steps]


# --- fixed schedules against hand-computed values ------------------------------------------------------

def test_constant_gives_its_value_per_member():
    s = ConstantAlpha([0.0, 0.3, 1.0])
    assert s.n_members == 3
    assert s.alpha(0).tolist() == pytest.approx([0.0, 0.3, 1.0])
    assert s.alpha(10_000).tolist() == pytest.approx([0.0, 0.3, 1.0])
    assert s.alpha(0).dtype == torch.float32
    assert ConstantAlpha(0.5, n_members=4).alpha(7).tolist() == [0.5] * 4


def test_linear_and_cosine_ramp_between_begin_and_end_step():
    lin = LinearAlpha(start=0.2, end=0.8, begin=100, end_step=300)
    got = values(lin, [0, 100, 200, 250, 300, 1000])
    assert [g[0] for g in got] == pytest.approx([0.2, 0.2, 0.5, 0.65, 0.8, 0.8])
    cos = CosineAlpha(start=0.2, end=0.8, begin=100, end_step=300)
    half_cos = (1 - math.cos(math.pi / 4)) / 2                       # frac 0.25
    got = values(cos, [0, 100, 150, 200, 300, 400])
    assert [g[0] for g in got] == pytest.approx([0.2, 0.2, 0.2 + 0.6 * half_cos, 0.5, 0.8, 0.8], abs=1e-7)
    down = LinearAlpha(start=1.0, end=0.0, begin=0, end_step=10)
    assert down.alpha(3).item() == pytest.approx(0.7)


def test_sigmoid_follows_alphaflow_formula_and_snaps_to_its_ends():
    s = SigmoidAlpha(start=0.0, end=1.0, mid=100, width=100, gamma=10.0, clamp=0.01)
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    assert s.alpha(100).item() == pytest.approx(0.5)
    assert s.alpha(120).item() == pytest.approx(sig(2.0))
    assert s.alpha(80).item() == pytest.approx(sig(-2.0))
    assert s.alpha(150).item() == 1.0          # sig(5) = 0.9933 is within clamp 0.01 of the end
    assert s.alpha(0).item() == 0.0            # sig(-10) = 4.5e-5: the start, exactly
    rev = SigmoidAlpha(start=1.0, end=0.0, mid=100, width=100, gamma=10.0, clamp=0.0)
    assert rev.alpha(120).item() == pytest.approx(1 - sig(2.0))
    assert 0 < rev.alpha(300).item() < 1e-8    # 1 - sig(20) = 2e-9; clamp 0: no snapping


def test_step_is_piecewise_constant_from_each_milestone_on():
    s = StepAlpha(milestones=[10, 20], values=[0.0, 0.5, 1.0])
    got = values(s, [0, 9, 10, 19, 20, 100])
    assert [g[0] for g in got] == [0.0, 0.0, 0.5, 0.5, 1.0, 1.0]
    per_member = StepAlpha(milestones=[[10], [5]], values=[[0.2, 0.8], [0.1, 0.9]])
    assert per_member.alpha(7).tolist() == pytest.approx([0.2, 0.9])
    assert per_member.spec(1) == {"name": "step", "milestones": [5], "values": [0.1, 0.9]}


@pytest.mark.parametrize("schedule", [
    ConstantAlpha([0.1, 0.4, 0.9]),
    LinearAlpha(start=[0.0, 0.5, 1.0], end=[1.0, 0.5, 0.0], begin=[0, 10, 20], end_step=[100, 110, 50]),
    CosineAlpha(start=0.0, end=[1.0, 0.3, 0.6], begin=5, end_step=[50, 60, 70]),
    SigmoidAlpha(start=[0.0, 0.2, 0.9], end=1.0, mid=[30, 40, 50], width=[40, 50, 60], gamma=[5.0, 10.0, 20.0],
                 clamp=[0.0, 0.01, 0.05]),
    StepAlpha(milestones=[[10, 20], [15, 30], [5, 6]], values=[[0.0, 0.5, 1.0], [1.0, 0.5, 0.0], [0.3, 0.3, 0.7]]),
])
def test_packed_member_equals_its_single_schedule(schedule):
    """Per-member keys: member i of a packed schedule gives what a single run with member i's keys gives."""
    for i in range(schedule.n_members):
        spec = schedule.spec(i)
        single = type(schedule)(**{k: v for k, v in spec.items() if k != "name"})
        assert single.n_members == 1
        for step in (0, 7, 12, 25, 45, 80, 500):
            assert single.alpha(step).item() == schedule.alpha(step)[i].item()


def test_per_sample_alpha_broadcasts_a_member_value_over_its_samples():
    s = ConstantAlpha([0.25, 0.75])
    h = torch.rand(2, 5)
    assert torch.equal(s.alpha(0, h), torch.tensor([[0.25] * 5, [0.75] * 5]))
    one = ConstantAlpha(0.5)
    assert one.alpha(0, torch.rand(4)).tolist() == [0.5] * 4   # one member without a member axis


def test_trajectory_summarises_each_new_step_once_and_survives_a_checkpoint():
    s = LinearAlpha(start=0.2, end=0.8, begin=100, end_step=300)
    assert s.trajectory(0) == {"start": None, "end": None, "mean": None}
    for step in (0, 100, 100, 200, 200, 300):      # repeated calls at a step (grad-var replicas) count once
        s.alpha(step)
    assert s.trajectory(0) == pytest.approx({"start": 0.2, "end": 0.8, "mean": (0.2 + 0.2 + 0.5 + 0.8) / 4})
    resumed = LinearAlpha(start=0.2, end=0.8, begin=100, end_step=300)
    resumed.load_state_dict(s.state_dict())
    for step in (400, 500):
        s.alpha(step)
        resumed.alpha(step)
    assert resumed.trajectory() == s.trajectory()
    assert s.trajectory()["end"] == pytest.approx([0.8])


# --- adaptive ------------------------------------------------------------------------------------------

def scalar_diagnostics(h, j_s, j_F2, sigma2, bias2) -> dict[str, torch.Tensor]:
    """Summarised whole-batch diagnostics of a batch with one (h, j_s, j_F2, sigma2, bias2) per member."""
    t = lambda x: torch.tensor(x, dtype=torch.float64)  # noqa: E731
    return {"c": c_from_jacobian(t(h), t(j_s), t(j_F2)), "sigma2": t(sigma2), "bias2": t(bias2)}


def closed_form(h, j_s, j_F2, sigma2, bias2) -> float:
    """docs/method.md 4: alpha* = clip(kappa * sigma2 / (sigma2 + bias2), 0, 1), kappa = 1 - j_s / (h j_F^2)."""
    return min(max((1 - j_s / (h * j_F2)) * sigma2 / (sigma2 + bias2), 0.0), 1.0)


MEMBERS = [  # (h, j_s, j_F2, sigma2, bias2): interior, kappa > 1 (clipped to 1), kappa < 0 (clipped to 0)
    (0.5, 1.0, 4.0, 1.0, 0.25),
    (0.5, -1.0, 4.0, 2.0, 0.0),
    (0.5, 4.0, 4.0, 1.0, 0.1),
]


def test_adaptive_returns_the_closed_form_alpha_star_after_warmup():
    diag = scalar_diagnostics(*map(list, zip(*MEMBERS)))
    expected = [closed_form(*m) for m in MEMBERS]
    assert expected == pytest.approx([0.4, 1.0, 0.0])
    s = AdaptiveAlpha(every=10, init=0.3, warmup=20, smoothing=0.0, n_members=3)
    s.observe(10, diag)                                   # during the warm-up: ignored
    assert s.alpha(15).tolist() == pytest.approx([0.3] * 3)
    assert s.alpha(20).tolist() == pytest.approx([0.3] * 3)
    s.observe(25, diag)                                   # not a multiple of every: ignored
    assert s.alpha(25).tolist() == pytest.approx([0.3] * 3)
    s.observe(30, diag)
    assert s.alpha(30).tolist() == pytest.approx(expected)


def test_adaptive_is_clipped_and_smoothed():
    diag = scalar_diagnostics(*map(list, zip(*MEMBERS)))
    target = torch.tensor([closed_form(*m) for m in MEMBERS], dtype=torch.float64).clamp(0.1, 0.9)
    s = AdaptiveAlpha(every=5, init=0.5, warmup=0, low=0.1, high=0.9, smoothing=[0.5, 0.8, 0.0], n_members=3)
    smooth = torch.tensor([0.5, 0.8, 0.0], dtype=torch.float64)
    state = torch.full((3,), 0.5, dtype=torch.float64)
    for step in (5, 10, 15):
        s.observe(step, diag)
        state = smooth * state + (1 - smooth) * target    # the EMA by hand, from init
        assert s.alpha(step).tolist() == pytest.approx(state.tolist())
    assert s.trajectory(2)["end"] == pytest.approx(0.1)


def test_adaptive_reads_the_diagnostics_pipeline():
    """Fed what mfsweep.tasks.diagnostics measures and summarises (per bin, last column the whole batch)."""
    from mfsweep.tasks.diagnostics import Ingredients, bin_statistics, summarise
    from mfsweep.method.theory import JacobianScalars

    n = 8
    per = lambda k: torch.tensor([[m[k]] * n for m in MEMBERS], dtype=torch.float64)  # noqa: E731
    ing = Ingredients(h=per(0), jacobian=JacobianScalars(per(1), per(2)), sigma2=per(3), bias2=per(4),
                      gap=torch.zeros(3, n, dtype=torch.float64), matrix=None)
    edges = [0.0, 0.1, 1.0]
    values = summarise(bin_statistics(ing, edges))        # (E, n_bins + 1) each
    s = AdaptiveAlpha(every=1, warmup=0, smoothing=0.0, n_members=3)
    s.observe(1, values, edges)
    assert s.alpha(1).tolist() == pytest.approx([closed_form(*m) for m in MEMBERS])
    assert s.alpha(1).tolist() == pytest.approx(values["alpha_star_scalar"][:, -1].tolist())


def test_packed_adaptive_member_equals_its_single_schedule():
    diag = scalar_diagnostics(*map(list, zip(*MEMBERS)))
    packed = AdaptiveAlpha(every=[5, 10, 5], init=[0.0, 0.5, 1.0], warmup=[0, 10, 5], low=[0.0, 0.2, 0.0],
                           high=[1.0, 0.8, 0.5], smoothing=[0.0, 0.5, 0.9], n_members=3)
    singles = [AdaptiveAlpha(**{k: v for k, v in packed.spec(i).items() if k != "name"}) for i in range(3)]
    for step in range(0, 31, 5):
        packed.observe(step, diag)
        for i, single in enumerate(singles):
            single.observe(step, {k: v[i:i + 1] for k, v in diag.items()})
            assert single.alpha(step).item() == packed.alpha(step)[i].item()


def test_adaptive_keeps_a_member_whose_estimate_is_not_finite():
    s = AdaptiveAlpha(every=1, init=0.2, warmup=0, smoothing=0.0, n_members=2)
    s.observe(1, {"c": torch.tensor([2.0, math.nan]), "sigma2": torch.ones(2), "bias2": torch.zeros(2)})
    assert s.alpha(1).tolist() == pytest.approx([0.5, 0.2])


def test_adaptive_matrix_forms_read_their_diagnostics():
    s = AdaptiveAlpha(every=1, warmup=0, smoothing=0.0, estimate="upper_bound", n_members=2)
    assert s.requires.posterior and s.requires.diagnostics
    s.observe(1, {"alpha_star_ub": torch.tensor([[0.1, 0.7], [0.2, 0.4]])})
    assert s.alpha(1).tolist() == pytest.approx([0.7, 0.4])
    with pytest.raises(KeyError, match="alpha_star_m"):
        AdaptiveAlpha(estimate="matrix").observe(0, {"alpha_star_ub": torch.tensor([0.5])})
    assert not AdaptiveAlpha().requires.posterior


def test_adaptive_asks_for_diagnostics_at_its_update_steps():
    s = AdaptiveAlpha(every=[100, 50], warmup=[200, 0], n_members=2)
    assert [s.wants_diagnostics(k) for k in (0, 50, 100, 150, 200, 210)] == [True, True, True, True, True, False]
    s = AdaptiveAlpha(every=100, warmup=200)
    assert [s.wants_diagnostics(k) for k in (0, 100, 200, 250, 300)] == [False, False, True, False, True]
    assert not ConstantAlpha(0.5).wants_diagnostics(0)


def test_adaptive_h_gives_each_sample_its_bins_alpha():
    edges = [0.0, 0.1, 0.5, 1.0]
    s = AdaptiveHAlpha(every=1, init=0.3, warmup=0, smoothing=0.0, n_members=2)
    h = torch.tensor([[0.05, 0.2, 0.7, 1.0], [0.0, 0.1, 0.49, 0.5]])
    assert torch.equal(s.alpha(0, h), torch.full((2, 4), 0.3))          # before any estimate: init
    c = torch.tensor([[2.0, 4.0, math.nan, 3.0], [-1.0, 10.0, 5.0, 3.0]])  # per bin, then the whole batch
    s.observe(1, {"c": c, "sigma2": torch.ones(2, 4), "bias2": torch.zeros(2, 4)}, edges)
    per_bin = [[0.5, 0.75, 0.3], [1.0, 0.9, 0.8]]                        # 1 - 1/c; an empty bin keeps init
    torch.testing.assert_close(s.alpha(1, h), torch.tensor([[0.5, 0.75, 0.3, 0.3], [1.0, 0.9, 0.9, 0.8]]))
    logged = s.log_values(1)
    assert logged["train/alpha"].tolist() == pytest.approx([sum(r) / 3 for r in per_bin])
    assert logged["train/alpha_h2"].tolist() == pytest.approx([0.3, 0.8])
    with pytest.raises(ValueError, match="bin edges changed"):
        s.observe(2, {"c": c, "sigma2": torch.ones(2, 4), "bias2": torch.zeros(2, 4)}, [0.0, 0.5, 1.0])
    resumed = AdaptiveHAlpha(every=1, init=0.3, warmup=0, smoothing=0.0, n_members=2)
    resumed.load_state_dict(s.state_dict())
    assert torch.equal(resumed.alpha(1, h), s.alpha(1, h))


# --- checks name the key -------------------------------------------------------------------------------

@pytest.mark.parametrize("cls, kwargs, message", [
    (ConstantAlpha, {"value": 1.5}, "alpha.value must be in [0, 1], got 1.5"),
    (ConstantAlpha, {"value": [0.0, -0.1]}, "alpha.value must be in [0, 1], got -0.1 (member 1)"),
    (ConstantAlpha, {"value": "high"}, "alpha.value must be a finite number, got 'high'"),
    (ConstantAlpha, {"value": [0.1, 0.2], "n_members": 3}, "alpha.value has 2 values, but there are 3 members"),
    (LinearAlpha, {"end": 2}, "alpha.end must be in [0, 1], got 2"),
    (LinearAlpha, {"begin": 10, "end_step": 10}, "alpha.end_step must be > alpha.begin (10), got 10"),
    (LinearAlpha, {"begin": 1.5}, "alpha.begin must be an integer, got 1.5"),
    (LinearAlpha, {"start": [0.0, 0.1], "end": [1.0, 1.0, 1.0]}, "alpha keys give different member counts [2, 3]"),
    (CosineAlpha, {"start": -1}, "alpha.start must be in [0, 1], got -1"),
    (SigmoidAlpha, {"width": 0}, "alpha.width must be a positive integer, got 0"),
    (SigmoidAlpha, {"gamma": 0.0}, "alpha.gamma must be in (0, inf), got 0"),
    (SigmoidAlpha, {"clamp": 0.7}, "alpha.clamp must be in [0, 0.5], got 0.7"),
    (StepAlpha, {"milestones": [10, 5], "values": [0.0, 0.5, 1.0]}, "alpha.milestones must be increasing"),
    (StepAlpha, {"milestones": [10], "values": [0.0, 0.5, 1.0]}, "alpha.values must have one more entry than"),
    (StepAlpha, {"milestones": 10}, "alpha.milestones must be a list, got 10"),
    (AdaptiveAlpha, {"every": 0}, "alpha.every must be a positive integer, got 0"),
    (AdaptiveAlpha, {"warmup": -1}, "alpha.warmup must be a non-negative integer, got -1"),
    (AdaptiveAlpha, {"low": 0.8, "high": 0.2}, "alpha.high must be >= alpha.low (0.8), got 0.2"),
    (AdaptiveAlpha, {"smoothing": 1.0}, "alpha.smoothing must be in [0, 1), got 1"),
    (AdaptiveAlpha, {"estimate": "exact"}, "alpha.estimate must be one of ['scalar', 'upper_bound', 'matrix']"),
    (AdaptiveAlpha, {"estimate": ["scalar", "matrix"]}, "alpha.estimate takes one value for all the members"),
    (AdaptiveHAlpha, {"init": 3}, "alpha.init must be in [0, 1], got 3"),
])
def test_bad_keys_fail_naming_the_key(cls, kwargs, message):
    with pytest.raises(ConfigValueError) as err:
        cls(**kwargs)
    assert str(err.value).startswith(message)
    assert err.value.key == message.split(" ")[0]


def test_build_names_unknown_keys_and_targets():
    with pytest.raises(ConfigValueError, match=r"^alpha\.end must be in \[0, 1\], got 2"):
        build_schedule({"_target_": "mfsweep.method.schedule.LinearAlpha", "end": 2})
    with pytest.raises(ConfigValueError, match=r"^alpha\.ned is not a key of LinearAlpha"):
        build_schedule({"_target_": "mfsweep.method.schedule.LinearAlpha", "ned": 1})
    with pytest.raises(ConfigValueError, match=r"^alpha\.n_members is not a key"):
        build_schedule({"_target_": "mfsweep.method.schedule.ConstantAlpha", "n_members": 3})
    with pytest.raises(ConfigValueError, match=r"^alpha\._target_ names no importable class"):
        build_schedule({"_target_": "mfsweep.method.schedule.NoSuchAlpha"})
    with pytest.raises(ConfigValueError, match=r"^alpha\._target_ must name a AlphaSchedule subclass"):
        build_schedule({"_target_": "torch.nn.Linear"})
    with pytest.raises(ConfigValueError, match=r"^alpha\._target_ is missing"):
        build_schedule({"value": 0.5})


# --- the group YAMLs ------------------------------------------------------------------------------------

def staged(name: str, group: str = "alpha", **overrides):
    return group_yaml(group, name, **overrides)


@pytest.mark.parametrize("name", YAMLS)
def test_group_yaml_builds_its_class_with_exactly_its_keys(name):
    assert set(BUILT_IN) <= set(YAMLS)
    cfg = staged(name)
    schedule = build_schedule(cfg, n_members=2)
    assert schedule.name == name and schedule.n_members == 2
    assert schedule.alpha(0).shape == (2,)
    params = set(inspect.signature(type(schedule)).parameters) - {"n_members"}
    assert set(cfg.keys()) - {"_target_"} == params == set(schedule.keys)   # no dead keys, none missing
    spec = schedule.spec(0)
    assert spec["name"] == name and set(spec) - {"name"} == params


def test_group_yaml_takes_per_member_overrides():
    schedule = build_schedule(staged("linear", end=[1.0, 0.5], end_step=100))
    assert schedule.n_members == 2
    assert schedule.alpha(50).tolist() == pytest.approx([0.5, 0.25])
    assert build_schedule(staged("linear")).spec()["end_step"] == 4000     # the interpolated default
    with pytest.raises(ConfigValueError, match=r"^alpha\.end must be in \[0, 1\], got 2"):
        build_schedule(staged("linear", end=2))
    with pytest.raises(ConfigValueError, match=r"^alpha\.every must be a positive integer, got 0"):
        build_schedule(staged("adaptive", every=0))


# --- structural: a new schedule is one module + one YAML ------------------------------------------------

TOY_MODULE = '''
"""A toy schedule: alpha = top * sqrt(min(step / steps, 1))."""
import torch
from mfsweep.method.component import check_positive_int
from mfsweep.method.schedule import AlphaSchedule


class SqrtAlpha(AlphaSchedule):
    name, keys, integer_keys = "sqrt", ("top", "steps"), ("steps",)

    def __init__(self, top=1.0, steps=100, n_members=None):
        self._init_keys(n_members, top=top, steps=steps)

    def check(self):
        self._check_alpha("top")
        check_positive_int(self.key("steps"), self.steps)

    def bounds(self):
        return torch.zeros_like(self.top), self.top

    def _value(self, step):
        return self.top * (step / self.steps).clamp(max=1.0).sqrt()
'''


def use_schedule(cfg, n_members: int) -> dict:
    """What the trainer will do with whatever `alpha=...` names: build, step, record, checkpoint."""
    schedule = build_schedule(cfg, n_members=n_members)
    for step in range(0, 101, 25):
        alpha = schedule.alpha(step, torch.rand(n_members, 3))
        assert alpha.shape == (n_members, 3)
    state = schedule.state_dict()
    return {"spec": schedule.spec(0), "trajectory": schedule.trajectory(0), "alpha": schedule.alpha(100).tolist(),
            "state": state}


def test_a_new_schedule_is_one_module_plus_one_yaml(tmp_path, monkeypatch):
    (tmp_path / "toy_schedules.py").write_text(textwrap.dedent(TOY_MODULE))
    conf = tmp_path / "conf"
    (conf / "alpha").mkdir(parents=True)
    (conf / "alpha" / "sqrt.yaml").write_text("_target_: toy_schedules.SqrtAlpha\ntop: 0.8\nsteps: 100\n")
    (conf / "alpha" / "linear.yaml").write_text((CONF / "alpha" / "linear.yaml").read_text())
    (conf / "config.yaml").write_text("defaults:\n  - alpha: sqrt\n  - _self_\ntrainer:\n  max_steps: 100\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        toy = compose("config", overrides=["alpha.top=[0.8,0.4]"])
        builtin = compose("config", overrides=["alpha=linear"])
    got = use_schedule(toy.alpha, 2)
    assert got["spec"] == {"name": "sqrt", "top": 0.8, "steps": 100}
    assert got["alpha"] == pytest.approx([0.8, 0.4])
    mean = sum(0.8 * math.sqrt(k / 100) for k in (0, 25, 50, 75, 100)) / 5
    assert got["trajectory"] == pytest.approx({"start": 0.0, "end": 0.8, "mean": mean})
    assert use_schedule(builtin.alpha, 2)["alpha"] == pytest.approx([1.0, 1.0])   # the same path
    with pytest.raises(ConfigValueError, match=r"^alpha\.steps must be a positive integer, got 0"):
        with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
            build_schedule(compose("config", overrides=["alpha.steps=0"]).alpha)


def test_a_shared_key_named_on_a_packed_command_line_reaches_every_member_as_one_value():
    """`alpha=adaptive alpha.estimate=matrix seed=0,1` in packed mode: estimate is part of each cell's setting
    (it names the folder), but the members share it: the schedule gets 'matrix', not ['matrix', 'matrix']."""
    from conftest import compose_cfg
    from mfsweep.config.build import member_schedule

    cfg = compose_cfg("dataset=dgmm", "alpha=adaptive", "alpha.estimate=matrix", "seed=[0,1]")
    schedule = member_schedule(cfg, [{"alpha.estimate": "matrix", "seed": 0}, {"alpha.estimate": "matrix", "seed": 1}])
    assert (schedule.estimate, schedule.n_members) == ("matrix", 2)
    with pytest.raises(ConfigValueError, match=r"^alpha\.estimate takes one value for all the members"):
        member_schedule(cfg, [{"alpha.estimate": "matrix"}, {"alpha.estimate": "scalar"}])
