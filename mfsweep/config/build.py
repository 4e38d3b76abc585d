"""Build the method's configurable parts from their config groups: `alpha` (an `AlphaSchedule`) and `tangent`
(a `Proxy`), each a YAML whose `_target_` names the class and whose other keys are its constructor arguments
(`hydra.utils.instantiate`, as lightning-hydra-template does).

Errors come out as `ConfigValueError` naming the config key (`alpha.end must be in [0, 1], got 2`), not as
Hydra's `InstantiationException`: a key the class does not take, a `_target_` that does not exist or is not
a schedule (proxy), and the class's own checks.
"""
from __future__ import annotations

import inspect
from typing import Any, Mapping, Sequence, TypeVar

import hydra.utils
from hydra.errors import InstantiationException
from omegaconf import DictConfig, OmegaConf

from mfsweep.config.members import LIST_VALUED, MEMBER_KEYS
from mfsweep.method.errors import ConfigValueError
from mfsweep.method.proxy import Proxy
from mfsweep.method.schedule import AlphaSchedule

T = TypeVar("T")

# Arguments a trainer passes at build time, never set in a YAML.
RUNTIME_ARGS = ("n_members",)


def instantiate_component(cfg: DictConfig | dict, group: str, base: type[T], **runtime: Any) -> T:
    """The `base` subclass that `cfg` (one config group's node) names by `_target_`, built with its keys and
    the `runtime` arguments; every failure a `ConfigValueError` naming the key."""
    if not isinstance(cfg, DictConfig):
        cfg = OmegaConf.create(cfg)
    target = cfg.get("_target_")
    if target is None:
        raise ConfigValueError(f"{group}._target_", "is missing: a YAML of this group names its class")
    try:
        cls = hydra.utils.get_class(str(target))
    except Exception as err:  # Hydra wraps import failures in several types
        raise ConfigValueError(f"{group}._target_", f"names no importable class, got {target!r} ({err})") from None
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise ConfigValueError(f"{group}._target_", f"must name a {base.__name__} subclass, got {target!r}")
    params = inspect.signature(cls).parameters
    for key in cfg:
        if str(key).startswith("_"):
            continue
        if key not in params or key in RUNTIME_ARGS:
            allowed = [p for p in params if p not in RUNTIME_ARGS and p not in ("self", "args", "kwargs")]
            raise ConfigValueError(f"{group}.{key}", f"is not a key of {cls.__name__} (its keys: {allowed})")
    try:
        return hydra.utils.instantiate(cfg, **runtime)
    except InstantiationException as err:
        cause = err.__cause__
        if isinstance(cause, ConfigValueError):
            raise cause from None
        raise


def build_schedule(cfg: DictConfig | dict, n_members: int | None = None) -> AlphaSchedule:
    """The `alpha` group's schedule for `n_members` members (None: as many as its per-member keys give)."""
    return instantiate_component(cfg, "alpha", AlphaSchedule, n_members=n_members)


def build_proxy(cfg: DictConfig | dict, n_members: int | None = None) -> Proxy:
    """The `tangent` group's proxy (`Proxy.setup` then attaches it to the network and the dataset)."""
    return instantiate_component(cfg, "tangent", Proxy, n_members=n_members)


GROUPS = {"alpha": AlphaSchedule, "tangent": Proxy}


def component_keys(cfg: DictConfig) -> dict[str, bool]:
    """The per-member keys of the run's schedule and proxy (`alpha.end`, `tangent.ema_decay`), each with whether
    its one value is itself a list (a step schedule's `milestones`): what the classes named by `_target_`
    declare (`member_keys()`, `vector_keys`), so a new component's keys pack without a change elsewhere. A group
    whose `_target_` does not name a component adds nothing (building it reports that)."""
    out: dict[str, bool] = {}
    for group, base in GROUPS.items():
        try:
            cls = hydra.utils.get_class(str(OmegaConf.select(cfg, f"{group}._target_")))
        except Exception:  # Hydra wraps import failures in several types
            continue
        if isinstance(cls, type) and issubclass(cls, base):
            vectors = getattr(cls, "vector_keys", ())
            out |= {f"{group}.{key}": key in vectors for key in cls.member_keys()}
    return out


def member_keys(cfg: DictConfig) -> dict[str, bool]:
    """Every per-member key of `cfg`'s run, with whether its one value is a list: the engine's (`MEMBER_KEYS`)
    and its schedule's and proxy's own."""
    return {k: k in LIST_VALUED for k in MEMBER_KEYS} | component_keys(cfg)


def _member_node(cfg: DictConfig, group: str, members: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The group's node (interpolations resolved) where each key that the members set (`alpha.end` in their
    values) holds one value per member."""
    node = OmegaConf.to_container(cfg[group], resolve=True)
    per_member = component_keys(cfg)
    own = sorted({k.split(".", 1)[1] for m in members for k in m if k.startswith(f"{group}.")})
    for key in own:
        values = [m.get(f"{group}.{key}", node.get(key)) for m in members]
        if f"{group}.{key}" in per_member:
            node[key] = values
        elif all(v == values[0] for v in values):  # a shared key named on the command line: one value
            node[key] = values[0]
        else:
            raise ConfigValueError(f"{group}.{key}", f"takes one value for all the members of a process, got "
                                                     f"{values}: sweep it with sweep.mode=per_run, or launch "
                                                     "one packed sweep per value")
    return node


def member_schedule(cfg: DictConfig, members: Sequence[Mapping[str, Any]]) -> AlphaSchedule:
    """The schedule of a job whose member i has the per-member values `members[i]` (`{"alpha.value": 0.5}`)."""
    return build_schedule(_member_node(cfg, "alpha", members), len(members))


def member_proxy(cfg: DictConfig, members: Sequence[Mapping[str, Any]]) -> Proxy:
    """The proxy of a job whose member i has the per-member values `members[i]` (`{"tangent.ema_decay": 0.9}`)."""
    return build_proxy(_member_node(cfg, "tangent", members), len(members))


def check_components(cfg: DictConfig, members: Sequence[Mapping[str, Any]], exact_posterior: bool) -> None:
    """Build the job's schedule and proxy as its members will have them (each checks its own keys), then what
    they need from each other and from the dataset (`exact_posterior`: the dataset's posterior is known)."""
    schedule, proxy = member_schedule(cfg, members), member_proxy(cfg, members)
    proxy.check_schedule(schedule)
    from mfsweep.data import EXACT_POSTERIOR

    exact = f"a dataset with an exact posterior ({list(EXACT_POSTERIOR)}, or any set made finite with " \
            f"dataset.finite_size=N), but " \
            f"dataset.name is {cfg.dataset.name!r} with dataset.finite_size null"
    if proxy.requires.oracle and not exact_posterior:
        raise ConfigValueError(proxy.group, f"={proxy.name} needs {exact}")
    if schedule.requires.posterior and not exact_posterior:
        raise ConfigValueError(schedule.group, f"={schedule.name} with this estimate needs {exact}")
