"""Tangent proxies: the deterministic `u_bar(z_t, t)` of docs/method.md 3 that the JVP tangent mixes in,
`v_tan = (1 - alpha) v_c + alpha u_bar` (config group `tangent`, one class per YAML, picked by `_target_`).

A proxy is an `nn.Module` so that its state (an EMA copy, a velocity head) moves with the trainer's module
and lands in its checkpoints. Its lifecycle in a trainer:

    proxy.setup(model, marginal_velocity=..., generators=...)   # once, after the network is initialised
    u_bar = proxy.velocity(model, z, t, bind=..., offset=D)      # each step, under stop-gradient (None: none)
    extra = proxy.extra_loss(z, t, v_c, bind=...)                # (E, B) or None; weighted by proxy.extra_loss_weight()
    proxy.trainable_parameters()                                 # what the optimizer trains besides the network
    proxy.update(model)                                          # after each optimizer step (EMA)

Shapes: z and v_c `(E, B, *sample)`, t `(E, B)` for stacked ensembles (or `(B, *sample)` and `(B,)` for a
single unstacked network). `bind(module)` returns the module's `u(z, r, t)` for this batch (a task with
labels binds them there); by default the module itself. Every scalar key may differ per member
(`component.py`): it is stored as an `(E,)` tensor.
"""
from __future__ import annotations

import copy
from typing import Any, Callable, Sequence

import torch
from torch import nn

from mfsweep.method.component import (
    ConfigValueError,
    Requires,
    check_positive_int,
    check_range,
    infer_members,
    member_spec,
    member_values,
)
from mfsweep.method.jvp import UFn
from mfsweep.method.loss import per_sample
from mfsweep.method.schedule import AlphaSchedule
from mfsweep.method.tangent import boundary_r

Bind = Callable[[nn.Module], UFn]
MarginalVelocity = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _plain(module: nn.Module) -> UFn:
    return module


class Proxy(nn.Module):
    """Base class: no proxy state; subclasses override what they have.

    A subclass lists its per-member scalar config keys in `keys` (constructor arguments that its YAML sets;
    stored as `(E,)` buffers, integer ones named in `integer_keys`) and calls `_init_keys(n_members, **keys)`
    from its constructor, which runs `check()`.
    """

    group = "tangent"
    name = ""
    keys: tuple[str, ...] = ()
    integer_keys: tuple[str, ...] = ()
    requires = Requires()

    @classmethod
    def member_keys(cls) -> tuple[str, ...]:
        """The keys that may differ per member (a packed sweep over them trains one member per value)."""
        return cls.keys

    def __init__(self) -> None:
        super().__init__()
        self.n_members: int | None = None

    def _init_keys(self, n_members: int | None, **keys: Any) -> None:
        self.n_members = infer_members(self.group, keys, n_members)
        for key, value in keys.items():
            values = member_values(self.key(key), value, self.n_members, integer=key in self.integer_keys)
            self.register_buffer(key, values, persistent=False)
        self.check()

    def key(self, name: str) -> str:
        """The config key of constructor argument `name` (`tangent.ema_decay`)."""
        return f"{self.group}.{name}"

    # --- what the trainer calls -------------------------------------------------------------------
    def setup(self, model: nn.Module, *, marginal_velocity: MarginalVelocity | None = None,
              generators: Sequence[torch.Generator] | None = None) -> None:
        """Once, before training, with the initialised network: the EMA copies it, the velocity head is built
        beside it (its members initialised from `generators`, one per member), the oracle takes the dataset's
        `marginal_velocity(z, t)`. `n_members` follows the model's (`model.n_members`, else 1)."""
        members = getattr(model, "n_members", None) or 1
        if self.n_members not in (None, 1, members):
            raise ConfigValueError(self.group, f"has per-member keys for {self.n_members} members, "
                                               f"but the network has {members}")
        if self.n_members != members:
            for key in self.keys:
                self.register_buffer(key, getattr(self, key).expand(members).clone(), persistent=False)
            self.n_members = members

    def velocity(self, model: nn.Module, z: torch.Tensor, t: torch.Tensor, *, bind: Bind = _plain,
                 offset: torch.Tensor | float = 0.0) -> torch.Tensor | None:
        """`u_bar(z_t, t)` under stop-gradient, shaped like z; None for the conditional tangent. `model` is the
        live network; `offset` the D of `r = t - D` where boundary proxies evaluate a network (a float, or per
        member shaped to broadcast against t)."""
        return None

    def extra_loss(self, z: torch.Tensor, t: torch.Tensor, v_c: torch.Tensor, *,
                   bind: Bind = _plain) -> torch.Tensor | None:
        """The proxy's own per-sample loss `(E, B)` (None: none); the trainer adds
        `extra_loss_weight() * extra.mean(-1)` to each member's objective."""
        return None

    def extra_loss_weight(self) -> torch.Tensor | None:
        """The weight of `extra_loss` per member, `(E,)` (None: no extra loss)."""
        return None

    def trainable_parameters(self) -> list[nn.Parameter]:
        """The parameters the optimizer trains besides the network's (the velocity head's)."""
        return [p for p in self.parameters() if p.requires_grad]

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """After each optimizer step, with the live network (the EMA's step)."""

    # --- the record and the checks ---------------------------------------------------------------
    def spec(self, member: int | None = None) -> dict[str, Any]:
        """`{"name": ..., <its keys>}` for the record: member `member`'s values, or every member's (a key that
        differs per member as a list)."""
        return {"name": self.name} | member_spec({k: getattr(self, k) for k in self.keys}, member)

    def check(self) -> None:
        """Raise `ConfigValueError` naming the key of the first invalid value."""

    def check_schedule(self, schedule: AlphaSchedule) -> None:
        """Raise `ConfigValueError` if `schedule` can give an alpha this proxy cannot mix in."""
        if not self.requires.zero_alpha:
            return
        high = schedule.bounds()[1]
        if bool((high == 0).all()):
            return
        top = high.max().item()
        if schedule.value_key is not None:
            raise ConfigValueError(schedule.value_key, f"must be 0 with tangent={self.name} (no proxy to mix in), "
                                                       f"got {top}; choose tangent=ema, online, oracle or velocity_head")
        raise ConfigValueError(schedule.group, f"={schedule.name} reaches alpha {top}, but tangent={self.name} has no "
                                               f"proxy to mix in (alpha must be 0)")

    def extra_repr(self) -> str:
        return str(self.spec())


def _member_view(values: torch.Tensor, like: torch.Tensor, stacked: bool) -> torch.Tensor | float:
    """A per-member `(E,)` value to broadcast against `like` (`(E, ...)`), or a float for one unstacked member."""
    if not stacked:
        return values.item()
    return values.to(like).view(-1, *([1] * (like.dim() - 1)))


class ConditionalProxy(Proxy):
    """No proxy: the tangent is `v_c`, vanilla MeanFlow (only alpha = 0 is valid)."""

    name = "conditional"
    requires = Requires(zero_alpha=True)

    def __init__(self, n_members: int | None = None):
        super().__init__()
        self._init_keys(n_members)


class OracleProxy(Proxy):
    """`u_bar = v(z_t, t)`, the exact marginal velocity from the dataset (`marginal_velocity(z, t)`, Gaussian
    mixtures and finite sets): zero bias, the upper bound of what any proxy gives (docs/method.md 3)."""

    name = "oracle"
    requires = Requires(oracle=True)

    def __init__(self, n_members: int | None = None):
        super().__init__()
        self._init_keys(n_members)
        self.marginal_velocity: MarginalVelocity | None = None

    def setup(self, model: nn.Module, *, marginal_velocity: MarginalVelocity | None = None,
              generators: Sequence[torch.Generator] | None = None) -> None:
        super().setup(model)
        if marginal_velocity is None:
            raise ConfigValueError(self.group, f"={self.name} needs a dataset with an exact posterior "
                                               f"(a marginal_velocity(z, t)); this one has none")
        self.marginal_velocity = marginal_velocity

    @torch.no_grad()
    def velocity(self, model: nn.Module, z: torch.Tensor, t: torch.Tensor, *, bind: Bind = _plain,
                 offset: torch.Tensor | float = 0.0) -> torch.Tensor:
        if self.marginal_velocity is None:
            raise RuntimeError("OracleProxy.setup(marginal_velocity=...) was not called")
        return self.marginal_velocity(z, t).to(z.dtype)


class OnlineProxy(Proxy):
    """`u_bar = sg(u_theta(z_t, t - D, t))`: the live network's own boundary prediction, the EMA proxy with
    decay 0 without keeping a copy."""

    name = "online"

    def __init__(self, n_members: int | None = None):
        super().__init__()
        self._init_keys(n_members)

    @torch.no_grad()
    def velocity(self, model: nn.Module, z: torch.Tensor, t: torch.Tensor, *, bind: Bind = _plain,
                 offset: torch.Tensor | float = 0.0) -> torch.Tensor:
        return bind(model)(z, boundary_r(t, offset), t)


class EMAProxy(Proxy):
    """`u_bar = sg(u_ema(z_t, t - D, t))`: an exponential moving average of the network near the boundary
    r = t (docs/method.md 3), with its own `ema_decay` (separate from the evaluation EMA), per member."""

    name = "ema"
    keys = ("ema_decay",)

    def __init__(self, ema_decay: Any = 0.99, n_members: int | None = None):
        super().__init__()
        self._init_keys(n_members, ema_decay=ema_decay)
        self.ema: nn.Module | None = None

    def check(self) -> None:
        check_range(self.key("ema_decay"), self.ema_decay, low=0.0, high=1.0, high_open=True)

    def setup(self, model: nn.Module, *, marginal_velocity: MarginalVelocity | None = None,
              generators: Sequence[torch.Generator] | None = None) -> None:
        super().setup(model)
        self.ema = copy.deepcopy(model).requires_grad_(False)

    @torch.no_grad()
    def velocity(self, model: nn.Module, z: torch.Tensor, t: torch.Tensor, *, bind: Bind = _plain,
                 offset: torch.Tensor | float = 0.0) -> torch.Tensor:
        if self.ema is None:
            raise RuntimeError("EMAProxy.setup(model) was not called")
        return bind(self.ema)(z, boundary_r(t, offset), t)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """`ema <- decay * ema + (1 - decay) * theta`, each member with its own decay."""
        stacked = getattr(model, "n_members", None) is not None
        for ema, live in zip(self.ema.parameters(), model.parameters()):
            ema.lerp_(live, 1 - _member_view(self.ema_decay, ema, stacked))


class VelocityHeadProxy(Proxy):
    """A learned marginal velocity, as in Improved MeanFlow: an auxiliary network `v_phi(z_t, t)` trained by
    flow matching on `v_c` (`extra_loss = ||v_phi(z_t, t) - v_c||^2`, weight `loss_weight` per member), its
    prediction the proxy under stop-gradient. `head` builds the network from the keys that fix the trained
    network's inputs and outputs (`model.io_kwargs()`: `n_members, dim` for the stacked MLP; latent size,
    channels and classes for the DiT), a `u(z, r, t)` (with the task's labels, through `bind`) evaluated at
    r = t: a separate `EnsembleMLP` or a small separate DiT of its own width and depth (the YAML's `head`, a
    `_partial_` target, so `method/` imports no network).
    """

    name = "velocity_head"
    keys = ("loss_weight",)

    def __init__(self, head: Callable[..., nn.Module], loss_weight: Any = 1.0, n_members: int | None = None):
        super().__init__()
        if not callable(head):
            raise ConfigValueError(self.key("head"), f"must build a network (a _partial_ target), got {head!r}")
        self.make_head = head
        self._init_keys(n_members, loss_weight=loss_weight)
        self.head: nn.Module | None = None

    def check(self) -> None:
        check_range(self.key("loss_weight"), self.loss_weight, low=0.0, low_open=True)
        for name, value in getattr(self.make_head, "keywords", {}).items():
            if name in ("width", "depth"):
                if isinstance(value, bool) or not isinstance(value, int):
                    raise ConfigValueError(self.key(f"head.{name}"), f"must be a positive integer, got {value!r}")
                check_positive_int(self.key(f"head.{name}"), torch.tensor([value]))

    def spec(self, member: int | None = None) -> dict[str, Any]:
        target = getattr(self.make_head, "func", self.make_head)
        head = {"target": f"{target.__module__}.{target.__qualname__}"} | dict(getattr(self.make_head, "keywords", {}))
        return super().spec(member) | {"head": head}

    def setup(self, model: nn.Module, *, marginal_velocity: MarginalVelocity | None = None,
              generators: Sequence[torch.Generator] | None = None) -> None:
        """Build the head beside `model`, member i initialised from `generators[i]` (default: every member from
        seed 0, so that member i does not depend on its index)."""
        super().setup(model)
        if not hasattr(model, "io_kwargs"):
            raise ConfigValueError(self.group, f"={self.name} needs a network that says its inputs and outputs "
                                               f"(io_kwargs); {type(model).__name__} does not")
        if generators is None:
            generators = [torch.Generator().manual_seed(0) for _ in range(self.n_members)]
        if len(generators) != self.n_members:
            raise ValueError(f"one generator per member ({self.n_members}), got {len(generators)}")
        # A network that initialises from the global RNG (the DiT) draws from member 0's stream, in a fork.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(generators[0].initial_seed())
            head = self.make_head(**model.io_kwargs())
        if hasattr(head, "init_member"):
            for i, g in enumerate(generators):
                head.init_member(i, g)
        param = next(model.parameters(), None)
        self.head = head.to(param.device) if param is not None else head

    def _predict(self, z: torch.Tensor, t: torch.Tensor, bind: Bind) -> torch.Tensor:
        """`v_phi(z, t)`: the head at r = t."""
        if self.head is None:
            raise RuntimeError("VelocityHeadProxy.setup(model) was not called")
        return bind(self.head)(z, t, t)

    @torch.no_grad()
    def velocity(self, model: nn.Module, z: torch.Tensor, t: torch.Tensor, *, bind: Bind = _plain,
                 offset: torch.Tensor | float = 0.0) -> torch.Tensor:
        return self._predict(z, t, bind)

    def extra_loss(self, z: torch.Tensor, t: torch.Tensor, v_c: torch.Tensor, *,
                   bind: Bind = _plain) -> torch.Tensor:
        """`||v_phi(z_t, t) - v_c||^2` per sample: flow matching, whose minimiser is the marginal velocity."""
        sample_ndim = z.dim() - t.dim()
        return per_sample((self._predict(z.detach(), t, bind) - v_c.detach()).pow(2), sample_ndim)

    def extra_loss_weight(self) -> torch.Tensor:
        return self.loss_weight
