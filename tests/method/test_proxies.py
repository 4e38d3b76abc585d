"""Tangent proxies (mfsweep/method/proxy.py) against independent computations: the EMA against a hand EMA,
the online proxy against the live network at t - D, the oracle passing through, the velocity head learning
a Gaussian mixture's marginal velocity; checks naming the key; the group YAMLs; and the structural check
(a new proxy is one module plus one YAML)."""
from __future__ import annotations

import copy
import inspect
import textwrap
from functools import partial
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from conftest import group_yaml

from mfsweep.data.gmm import GaussianMixture
from mfsweep.method.component import ConfigValueError
from mfsweep.method.proxy import (
    ConditionalProxy,
    EMAProxy,
    OnlineProxy,
    OracleProxy,
    Proxy,
    VelocityHeadProxy,
)
from mfsweep.method.schedule import ConstantAlpha, LinearAlpha
from mfsweep.method.tangent import mix_tangent
from mfsweep.models.dit import DiT
from mfsweep.models.mlp import EnsembleMLP
from mfsweep.sweep.components import build_proxy, build_schedule

CONF = Path(__file__).resolve().parents[2] / "conf"
BUILT_IN = ("conditional", "ema", "oracle", "online", "velocity_head")
YAMLS = sorted(p.stem for p in (CONF / "tangent").glob("*.yaml"))  # a new YAML is tested too
E, D = 3, 2


def ensemble(members: int = E, dim: int = D, width: int = 16, seed: int = 0) -> EnsembleMLP:
    model = EnsembleMLP(members, dim, width, 2)
    for i in range(members):
        model.init_member(i, torch.Generator().manual_seed(seed + i))
    return model


def inputs(members: int = E, n: int = 5, dim: int = D, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(members, n, dim, generator=g), torch.rand(members, n, generator=g)


@torch.no_grad()
def perturb(model: torch.nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    for p in model.parameters():
        p.add_(0.1 * torch.randn(p.shape, generator=g))


# --- each proxy against an independent computation ------------------------------------------------------

def test_conditional_has_no_proxy_and_only_alpha_zero():
    proxy = ConditionalProxy()
    proxy.setup(ensemble())
    z, t = inputs()
    assert proxy.velocity(ensemble(), z, t) is None
    assert torch.equal(mix_tangent(z, proxy.velocity(ensemble(), z, t), 0.7), z)
    assert proxy.trainable_parameters() == [] and proxy.extra_loss(z, t, z) is None
    proxy.check_schedule(ConstantAlpha([0.0, 0.0]))
    with pytest.raises(ConfigValueError, match=r"^alpha\.value must be 0 with tangent=conditional"):
        proxy.check_schedule(ConstantAlpha([0.0, 0.3]))
    with pytest.raises(ConfigValueError, match=r"^alpha=linear reaches alpha 1.0, but tangent=conditional"):
        proxy.check_schedule(LinearAlpha())
    EMAProxy().check_schedule(LinearAlpha())      # any alpha in [0, 1] is fine with a proxy


def test_ema_follows_a_hand_ema_per_member_and_evaluates_near_the_boundary():
    model = ensemble()
    decay = [0.5, 0.9, 0.0]
    proxy = EMAProxy(ema_decay=decay)
    proxy.setup(model)
    hand = [p.detach().clone() for p in model.parameters()]
    for k in range(4):
        perturb(model, k)
        proxy.update(model)
        for h, p in zip(hand, model.parameters()):
            for i, d in enumerate(decay):
                h[i] = d * h[i] + (1 - d) * p.detach()[i]
    for h, p in zip(hand, proxy.ema.parameters()):
        torch.testing.assert_close(p, h)
    assert proxy.trainable_parameters() == []
    # u_bar = u_ema(z, t - D, t), with t - D clamped at 0 and D per member
    z, t = inputs()
    offset = torch.tensor([0.02, 0.5, 0.0]).view(E, 1)
    reference = copy.deepcopy(model)
    with torch.no_grad():
        for r, h in zip(reference.parameters(), hand):
            r.copy_(h)
        expected = reference(z, (t - offset).clamp_min(0.0), t)
    torch.testing.assert_close(proxy.velocity(model, z, t, offset=offset), expected)


def test_ema_decay_per_member_on_an_unstacked_network():
    """One member without a member axis (the DiT's case): the decay is a plain number."""
    model = torch.nn.Linear(3, 3)
    proxy = EMAProxy(ema_decay=0.75)
    proxy.setup(model)
    before = model.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    proxy.update(model)
    torch.testing.assert_close(proxy.ema.weight, 0.75 * before + 0.25 * (before + 1.0))


def test_online_is_the_live_network_at_t_minus_d_without_grad():
    model = ensemble()
    proxy = OnlineProxy()
    proxy.setup(model)
    z, t = inputs()
    calls = []

    def bind(module):                              # a task binds labels here; it must get the live network
        calls.append(module)
        return module

    u_bar = proxy.velocity(model, z, t, bind=bind, offset=0.1)
    assert calls == [model]
    assert not u_bar.requires_grad                 # stop-gradient: nothing flows back into the network
    torch.testing.assert_close(u_bar, model(z, (t - 0.1).clamp_min(0.0), t).detach())
    perturb(model, 0)                              # no copy: it follows the network at once
    torch.testing.assert_close(proxy.velocity(model, z, t, offset=0.1), model(z, (t - 0.1).clamp_min(0.0), t).detach())
    assert proxy.trainable_parameters() == [] and list(proxy.state_dict()) == []


def test_oracle_passes_the_datasets_marginal_velocity_through():
    gmm = GaussianMixture(dim=D, n_components=3)
    proxy = OracleProxy()
    proxy.setup(ensemble(), marginal_velocity=gmm.marginal_velocity)
    z, t = inputs()
    torch.testing.assert_close(proxy.velocity(ensemble(), z, t), gmm.marginal_velocity(z, t))
    assert proxy.requires.oracle
    with pytest.raises(ConfigValueError, match=r"^tangent=oracle needs a dataset with an exact posterior"):
        OracleProxy().setup(ensemble())


def test_velocity_head_is_a_separate_stacked_mlp_at_r_equals_t():
    model = ensemble()
    proxy = VelocityHeadProxy(head=partial(EnsembleMLP, width=8, depth=1), loss_weight=[1.0, 0.5, 2.0])
    proxy.setup(model, generators=[torch.Generator().manual_seed(7) for _ in range(E)])
    head = proxy.head
    assert isinstance(head, EnsembleMLP) and (head.n_members, head.dim, head.width, head.depth) == (E, D, 8, 1)
    assert {id(p) for p in proxy.trainable_parameters()} == {id(p) for p in head.parameters()}
    assert not {id(p) for p in head.parameters()} & {id(p) for p in model.parameters()}
    for p in head.parameters():                    # each member from its own generator: here all the same seed
        torch.testing.assert_close(p[0], p[1])
    z, t = inputs()
    u_bar = proxy.velocity(model, z, t)
    assert not u_bar.requires_grad
    torch.testing.assert_close(u_bar, head(z, t, t).detach())
    v_c = torch.randn_like(z)
    extra = proxy.extra_loss(z, t, v_c)
    assert extra.shape == (E, 5) and extra.requires_grad
    torch.testing.assert_close(extra, (head(z, t, t) - v_c).pow(2).sum(-1))
    assert proxy.extra_loss_weight().tolist() == [1.0, 0.5, 2.0]
    assert proxy.spec(1) == {"name": "velocity_head", "loss_weight": 0.5,
                             "head": {"target": "mfsweep.models.mlp.EnsembleMLP", "width": 8, "depth": 1}}


@pytest.fixture
def one_thread():
    """Small matmuls run fastest on one thread (and do not fight other processes for the cores)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_velocity_head_learns_the_marginal_velocity_of_a_gaussian_mixture(one_thread):
    """Trained a few hundred steps by its own loss, the head's bias against the oracle falls far below an
    untrained head's and the EMA proxy's at the start of training."""
    torch.manual_seed(0)
    dim, members = 4, 2
    gmm = GaussianMixture(dim=dim, n_components=4, scale=0.3)
    model = ensemble(members, dim, width=32)
    head = VelocityHeadProxy(head=partial(EnsembleMLP, width=64, depth=2), loss_weight=1.0)
    head.setup(model, generators=[torch.Generator().manual_seed(10 + i) for i in range(members)])
    ema = EMAProxy()
    ema.setup(model)
    g = torch.Generator().manual_seed(1)

    def batch(n):
        x = torch.stack([gmm.sample(n, g) for _ in range(members)])
        e = torch.randn(members, n, dim, generator=g)
        t = 0.1 + 0.9 * torch.rand(members, n, generator=g)
        return (1 - t[..., None]) * x + t[..., None] * e, t, e - x

    def bias2(proxy):
        z, t, _ = batch(2000)
        v = gmm.marginal_velocity(z.double(), t.double()).float()
        return (proxy.velocity(model, z, t) - v).pow(2).mean((1, 2))

    head_start, ema_start = bias2(head), bias2(ema)
    opt = torch.optim.Adam(head.trainable_parameters(), lr=3e-3)
    for _ in range(300):
        z, t, v_c = batch(256)
        loss = (head.extra_loss_weight().float() * head.extra_loss(z, t, v_c).mean(-1)).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    trained = bias2(head)
    assert bool((trained < 0.15 * ema_start).all()), (trained, ema_start)
    assert bool((trained < 0.15 * head_start).all()), (trained, head_start)


def test_scalar_keys_expand_to_the_networks_members_and_move_with_the_module():
    proxy = EMAProxy(ema_decay=0.9)
    assert proxy.n_members == 1
    proxy.setup(ensemble())
    assert proxy.ema_decay.tolist() == [0.9] * E and proxy.spec() == {"name": "ema", "ema_decay": 0.9}
    with pytest.raises(ConfigValueError, match=r"^tangent has per-member keys for 2 members, but the network has 3"):
        EMAProxy(ema_decay=[0.9, 0.99]).setup(ensemble())
    assert "ema_decay" not in proxy.state_dict()   # keys come from the config; the EMA copy is state
    assert any(k.startswith("ema.") for k in proxy.state_dict())
    proxy.double()
    assert next(proxy.ema.parameters()).dtype == torch.float64


def test_ema_state_round_trips_through_a_checkpoint():
    model = ensemble()
    proxy = EMAProxy(ema_decay=0.5)
    proxy.setup(model)
    perturb(model, 3)
    proxy.update(model)
    resumed = EMAProxy(ema_decay=0.5)
    resumed.setup(ensemble(seed=100))
    resumed.load_state_dict(proxy.state_dict())
    z, t = inputs()
    torch.testing.assert_close(resumed.velocity(model, z, t, offset=0.02), proxy.velocity(model, z, t, offset=0.02))


# --- checks name the key -------------------------------------------------------------------------------

@pytest.mark.parametrize("build, message", [
    (lambda: EMAProxy(ema_decay=1.5), "tangent.ema_decay must be in [0, 1), got 1.5"),
    (lambda: EMAProxy(ema_decay=1.0), "tangent.ema_decay must be in [0, 1), got 1"),
    (lambda: EMAProxy(ema_decay=[0.9, -0.1]), "tangent.ema_decay must be in [0, 1), got -0.1 (member 1)"),
    (lambda: EMAProxy(ema_decay=None), "tangent.ema_decay must be a finite number, got None"),
    (lambda: VelocityHeadProxy(head=partial(EnsembleMLP, width=8), loss_weight=0.0),
     "tangent.loss_weight must be in (0, inf), got 0"),
    (lambda: VelocityHeadProxy(head=partial(EnsembleMLP, width=0)),
     "tangent.head.width must be a positive integer, got 0"),
    (lambda: VelocityHeadProxy(head=partial(EnsembleMLP, depth=2.5)),
     "tangent.head.depth must be a positive integer, got 2.5"),
    (lambda: VelocityHeadProxy(head=3), "tangent.head must build a network"),
    (lambda: VelocityHeadProxy(head=partial(EnsembleMLP)).setup(torch.nn.Linear(2, 2)),
     "tangent=velocity_head needs a network that says its inputs and outputs (io_kwargs); Linear does not"),
])
def test_bad_keys_fail_naming_the_key(build, message):
    with pytest.raises(ConfigValueError) as err:
        build()
    assert str(err.value).startswith(message)


# --- the group YAMLs ------------------------------------------------------------------------------------

def staged(name: str, group: str = "tangent", **overrides):
    return group_yaml(group, name, **overrides)


@pytest.mark.parametrize("name", YAMLS)
def test_group_yaml_builds_its_class_with_exactly_its_keys(name):
    assert set(BUILT_IN) <= set(YAMLS)
    cfg = staged(name)
    proxy = build_proxy(cfg)
    assert isinstance(proxy, Proxy) and name.startswith(proxy.name)  # a variant: <proxy>_<what differs>
    params = set(inspect.signature(type(proxy)).parameters) - {"n_members"}
    assert set(cfg.keys()) - {"_target_"} == params                  # no dead keys, none missing
    if name.endswith("_dit"):  # a head for the latent DiT: set up beside a tiny one (tests/tasks/test_latent.py trains it)
        net = DiT(input_size=8, patch_size=4, in_channels=2, hidden_size=32, depth=1, num_heads=2, num_classes=3)
        proxy.setup(net)
        z, t = torch.randn(2, 2, 8, 8), torch.rand(2)
        u_bar = proxy.velocity(net, z, t, bind=lambda m: lambda z, r, t: m(z, r, t, torch.tensor([0, 2])))
        assert u_bar.shape == z.shape and proxy.spec(0)["name"] == proxy.name
        return
    gmm = GaussianMixture(dim=D, n_components=2)
    proxy.setup(ensemble(), marginal_velocity=gmm.marginal_velocity)
    z, t = inputs()
    u_bar = proxy.velocity(ensemble(), z, t, offset=0.02)
    assert (u_bar is None) == (name == "conditional")
    assert proxy.spec(0)["name"] == name


def test_group_yaml_bad_values_fail_naming_the_key():
    with pytest.raises(ConfigValueError, match=r"^tangent\.ema_decay must be in \[0, 1\), got 1\.5"):
        build_proxy(staged("ema", ema_decay=1.5))
    with pytest.raises(ConfigValueError, match=r"^tangent\.head\.width must be a positive integer, got 0"):
        build_proxy(staged("velocity_head", **{"head.width": 0}))
    with pytest.raises(ConfigValueError, match=r"^tangent\.ema_decay is not a key of OnlineProxy"):
        build_proxy(staged("online", ema_decay=0.5))
    # tangent=velocity_head with alpha.value outside [0, 1]: the schedule names its key before anything trains
    build_proxy(staged("velocity_head"))
    with pytest.raises(ConfigValueError, match=r"^alpha\.value must be in \[0, 1\], got 1\.5"):
        build_schedule(staged("constant", "alpha", value=1.5))
    conditional = build_proxy(staged("conditional"))
    with pytest.raises(ConfigValueError, match=r"^alpha\.value must be 0 with tangent=conditional"):
        conditional.check_schedule(build_schedule(staged("constant", "alpha", value=[0.0, 0.5])))


def test_group_ema_yaml_takes_per_member_decays():
    proxy = build_proxy(staged("ema", ema_decay=[0.9, 0.99, 0.999]))
    proxy.setup(ensemble())
    assert proxy.spec(2) == {"name": "ema", "ema_decay": 0.999}
    assert proxy.spec() == {"name": "ema", "ema_decay": [0.9, 0.99, 0.999]}


# --- structural: a new proxy is one module + one YAML ---------------------------------------------------

TOY_MODULE = '''
"""A toy proxy: u_bar = shrink * v(z_t, t), a deliberately biased oracle."""
import torch
from mfsweep.method.component import Requires, check_range
from mfsweep.method.proxy import OracleProxy


class ShrunkOracleProxy(OracleProxy):
    name, keys, requires = "shrunk_oracle", ("shrink",), Requires(oracle=True)

    def __init__(self, shrink=0.5, n_members=None):
        super(OracleProxy, self).__init__()
        self._init_keys(n_members, shrink=shrink)
        self.marginal_velocity = None

    def check(self):
        check_range(self.key("shrink"), self.shrink, low=0.0, high=1.0)

    @torch.no_grad()
    def velocity(self, model, z, t, *, bind=None, offset=0.0):
        return self.shrink.to(z).view(-1, 1, 1) * super().velocity(model, z, t)
'''


def use_proxy(cfg, model, marginal_velocity) -> dict:
    """What the trainer will do with whatever `tangent=...` names: build, attach, mix, update, record."""
    proxy = build_proxy(cfg)
    proxy.setup(model, marginal_velocity=marginal_velocity)
    z, t = inputs(model.n_members)
    u_bar = proxy.velocity(model, z, t, offset=0.02)
    v_tan = mix_tangent(z, u_bar, torch.full((model.n_members, 1, 1), 0.5))
    proxy.update(model)
    return {"spec": proxy.spec(0), "u_bar": u_bar, "v_tan": v_tan, "z": z, "t": t}


def test_a_new_proxy_is_one_module_plus_one_yaml(tmp_path, monkeypatch):
    (tmp_path / "toy_proxies.py").write_text(textwrap.dedent(TOY_MODULE))
    conf = tmp_path / "conf"
    (conf / "tangent").mkdir(parents=True)
    (conf / "tangent" / "shrunk_oracle.yaml").write_text("_target_: toy_proxies.ShrunkOracleProxy\nshrink: 0.5\n")
    (conf / "tangent" / "ema.yaml").write_text((CONF / "tangent" / "ema.yaml").read_text())
    (conf / "config.yaml").write_text("defaults:\n  - tangent: shrunk_oracle\n  - _self_\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    gmm = GaussianMixture(dim=D, n_components=3)
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        toy = compose("config", overrides=["tangent.shrink=[0.5,0.25,1.0]"]).tangent
        builtin = compose("config", overrides=["tangent=ema"]).tangent
        bad = compose("config", overrides=["tangent.shrink=2"]).tangent
    got = use_proxy(toy, ensemble(), gmm.marginal_velocity)
    assert got["spec"] == {"name": "shrunk_oracle", "shrink": 0.5}
    v = gmm.marginal_velocity(got["z"], got["t"])
    torch.testing.assert_close(got["u_bar"], torch.tensor([0.5, 0.25, 1.0]).view(-1, 1, 1) * v)
    assert use_proxy(builtin, ensemble(), None)["spec"] == {"name": "ema", "ema_decay": 0.99}   # the same path
    with pytest.raises(ConfigValueError, match=r"^tangent\.shrink must be in \[0, 1\], got 2"):
        build_proxy(bad)
