"""A composed config against its sections (`mfsweep.config.sections.SECTIONS`): every key present, every value
(each member's, where a per-member key holds a list) in range, then each section's checks across its keys."""
from __future__ import annotations

import dataclasses

from omegaconf import DictConfig, ListConfig, OmegaConf

from mfsweep.config.checks import config_key
from mfsweep.config.members import MEMBER_KEYS, SHAPE_PREFIXES, first_values, member_values
from mfsweep.config.sections import SECTIONS, Section
from mfsweep.method.errors import ConfigValueError

MISSING = object()


def check_sections(cfg: DictConfig, task: str) -> None:
    """Raise ConfigValueError for the first bad value of a section that `task`'s configs have."""
    first = first_values(cfg)
    for section in SECTIONS:
        if section.tasks is None or task in section.tasks:
            check_section(cfg, first, section)


def check_section(cfg: DictConfig, first: DictConfig, section: type[Section]) -> None:
    values = {}
    for f in dataclasses.fields(section):
        key = config_key(section.group, f.name)
        value = OmegaConf.select(first, key, default=MISSING)
        if value is MISSING:
            raise ConfigValueError(key, "is missing")
        check = f.metadata.get("check")
        if check is not None:
            for v in member_values(cfg, key) if key in MEMBER_KEYS else [_plain(value)]:
                check(key, v)
        values[f.name] = value
    section.from_node(values)  # the checks across keys (guidance.t_min <= guidance.t_max)


def check_shared(cfg: DictConfig) -> None:
    """Keys that change tensor shapes or the data take one value per process (members share them)."""
    for prefix in SHAPE_PREFIXES:
        node = OmegaConf.select(cfg, prefix.rstrip("."))
        if isinstance(node, ListConfig):
            raise _one_value(prefix)
        for key, value in (node.items() if isinstance(node, DictConfig) else []):
            if isinstance(value, ListConfig):
                raise _one_value(f"{prefix}{key}")


def _one_value(key: str) -> ConfigValueError:
    return ConfigValueError(key, "changes tensor shapes or the data, so it takes one value per process: sweep it "
                                 "as separate jobs (-m with sweep.mode=packed still makes one job per value)")


def _plain(value):
    return OmegaConf.to_container(value, resolve=True) if isinstance(value, (DictConfig, ListConfig)) else value
