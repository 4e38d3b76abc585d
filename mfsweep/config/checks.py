"""Checks of one config value, attached to a section's dataclass fields (`mfsweep.config.sections`): each raises
`ConfigValueError` naming the key, with the messages the command line shows."""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

from mfsweep.method.errors import COUNT, POSITIVE_INT, UNIT, ConfigValueError, Number, OneOf  # noqa: F401

Check = Callable[[str, Any], None]


def pair_in_unit(key: str, value: Any) -> None:
    """Adam's `[beta1, beta2]`, each in [0, 1)."""
    if not isinstance(value, (list, tuple)) or len(value) != 2 or \
            not all(isinstance(b, (int, float)) and not isinstance(b, bool) and 0 <= b < 1 for b in value):
        raise ConfigValueError(key, f"must be a pair [beta1, beta2] in [0, 1), or a list of such pairs, got {value!r}")


def bin_edges(key: str, value: Any) -> None:
    """Increasing edges from 0 to 1 (bins of t - r)."""
    for edge in value:
        UNIT(key, edge)
    if len(value) < 2 or value[0] != 0 or value[-1] != 1 or any(b <= a for a, b in zip(value, value[1:])):
        raise ConfigValueError(key, f"must be increasing edges from 0.0 to 1.0 (bins of t - r), got {list(value)}")


def optional(check: Check) -> Check:
    def maybe(key: str, value: Any) -> None:
        if value is not None:
            check(key, value)
    return maybe


def checked(check: Check) -> Any:
    """A dataclass field (no default: conf/ holds the defaults) whose value `check` accepts."""
    return dataclasses.field(metadata={"check": check})


def check_fields(obj: Any, fields: Sequence[dataclasses.Field] | None = None) -> None:
    """Run every field's check on `obj` (a section dataclass with a `group` class attribute)."""
    for f in fields or dataclasses.fields(obj):
        if "check" in f.metadata:
            f.metadata["check"](config_key(obj.group, f.name), getattr(obj, f.name))


def config_key(group: str, name: str) -> str:
    """`group.name`, or `name` for the top level."""
    return f"{group}.{name}" if group else name
