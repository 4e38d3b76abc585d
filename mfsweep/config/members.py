"""Which keys the members of one packed process may differ in (docs/design.md, "Execution modes"), and how a
config holds their values: one value, or a list of one value per member.

The engine's per-member keys are the fields of the per-member sections (`mfsweep.config.sections.PER_MEMBER`)
plus the grid axes; the alpha schedule's and the tangent proxy's own keys are per-member too, declared by their
classes (`member_keys`, `mfsweep.config.build.component_keys`). So a new per-member key is one dataclass field
and its default in conf/, and a new component adds its keys without touching this module.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Sequence

from omegaconf import DictConfig, ListConfig, OmegaConf

from mfsweep.config.sections import PER_MEMBER
from mfsweep.method.errors import ConfigValueError

# The grid axes every record holds at its top level; the other per-member keys form the cell's setting.
GRID_KEYS = ("alpha.value", "seed")
MEMBER_KEYS: tuple[str, ...] = GRID_KEYS + tuple(f"{section.group}.{f.name}" for section in PER_MEMBER
                                                 for f in dataclasses.fields(section))
# Keys whose one value is itself a list (Adam's betas): a packed sweep over them is a list of lists.
LIST_VALUED: tuple[str, ...] = tuple(f"{section.group}.{f.name}" for section in PER_MEMBER
                                     for f in dataclasses.fields(section) if str(f.type).startswith("tuple"))
# Config groups whose every key (one level down) is a component's, hence per-member; `alpha.*` in
# `sweep.packed_keys` packs all of the group's keys.
COMPONENT_GROUPS = ("alpha", "tangent")
# `sweep.packed_keys: null` (conf/config.yaml): every per-member key.
DEFAULT_PACKED_KEYS: tuple[str, ...] = GRID_KEYS + tuple(f"{g}.*" for g in COMPONENT_GROUPS) + MEMBER_KEYS[len(GRID_KEYS):]
# Keys that change tensor shapes (or the data), so members of one process must share them.
SHAPE_PREFIXES = ("model.", "dataset.", "trainer.batch_size")


def packed_keys(sweep: Any) -> list[str]:
    """`sweep.packed_keys` of the `sweep` node, its default (null) spelled out, after `check_packed_keys`."""
    keys = sweep.get("packed_keys") if sweep is not None else None
    keys = list(DEFAULT_PACKED_KEYS) if keys is None else [str(k) for k in keys]
    check_packed_keys(keys)
    return keys


def check_packed_keys(keys: Sequence[str]) -> None:
    """`sweep.packed_keys` may name only per-member keys: those that change tensor shapes or the data cannot
    differ between the members of one process."""
    for key in keys:
        if str(key).startswith(SHAPE_PREFIXES):
            raise ConfigValueError("sweep.packed_keys", f"{key} changes tensor shapes or the data, so members of one "
                                                        "process cannot differ in it: sweep it as separate jobs "
                                                        "(leave it out of sweep.packed_keys)")
        if key not in MEMBER_KEYS and str(key).partition(".")[0] not in COMPONENT_GROUPS:
            groups = ", ".join(f"{g}.*" for g in COMPONENT_GROUPS)
            raise ConfigValueError("sweep.packed_keys", f"{key!r} is not a per-member key; they are "
                                                        f"{list(MEMBER_KEYS)} and the component groups' keys ({groups})")
    for key in GRID_KEYS:
        if not packs(key, keys):
            raise ConfigValueError("sweep.packed_keys", f"must include {key} (the grid axes), got {list(keys)}")


def packs(key: str, packed: Sequence[str]) -> bool:
    """Whether `sweep.packed_keys` names `key`: itself, or its component group (`alpha.*`)."""
    group, _, rest = key.partition(".")
    return key in packed or (group in COMPONENT_GROUPS and bool(rest) and "." not in rest and f"{group}.*" in packed)


def is_packed(key: str, value: Any, list_valued: bool | None = None) -> bool:
    """Whether `value` of per-member `key` is a list of member values rather than one value (`list_valued`: its
    one value is a list; default: `key` in LIST_VALUED)."""
    if not isinstance(value, (list, tuple, ListConfig)):
        return False
    if key in LIST_VALUED if list_valued is None else list_valued:
        return all(isinstance(v, (list, tuple, ListConfig)) for v in value)
    return True


def member_values(cfg: DictConfig, key: str, list_valued: bool | None = None) -> list[Any]:
    """The values of per-member `key` in `cfg`: the packed list, or its one value as a one-item list."""
    value = OmegaConf.select(cfg, key)
    if isinstance(value, (DictConfig, ListConfig)):
        value = OmegaConf.to_container(value, resolve=True)
    return list(value) if is_packed(key, value, list_valued) else [value]


def first_values(cfg: DictConfig) -> DictConfig:
    """`cfg` with every packed per-member key (a list of member values) replaced by its first value."""
    cfg = cfg.copy()
    for key in MEMBER_KEYS:
        value = OmegaConf.select(cfg, key)
        if is_packed(key, value):
            OmegaConf.update(cfg, key, value[0], force_add=True)
    return cfg
