"""Build the method's configurable parts from their config groups: `alpha` (an `AlphaSchedule`) and `tangent`
(a `Proxy`), each a YAML whose `_target_` names the class and whose other keys are its constructor arguments
(`hydra.utils.instantiate`, as lightning-hydra-template does).

Errors come out as `ConfigValueError` naming the config key (`alpha.end must be in [0, 1], got 2`), not as
Hydra's `InstantiationException`: a key the class does not take, a `_target_` that does not exist or is not
a schedule (proxy), and the class's own checks.
"""
from __future__ import annotations

import inspect
from typing import Any, TypeVar

import hydra.utils
from hydra.errors import InstantiationException
from omegaconf import DictConfig, OmegaConf

from mfsweep.method.component import ConfigValueError
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
