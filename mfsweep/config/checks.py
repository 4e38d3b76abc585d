"""Checks of one config value, attached to a section's dataclass fields (`mfsweep.config.sections`): each raises
`ConfigValueError` naming the key, with the messages the command line shows."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from mfsweep.method.errors import ConfigValueError

Check = Callable[[str, Any], None]


@dataclass(frozen=True)
class Number:
    """A number (`integer`: an int) in `[low, high]` (`low_open`: `(low, high]`); None: unbounded."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    integer: bool = False

    def __call__(self, key: str, value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (self.integer and not isinstance(value, int)):
            raise ConfigValueError(key, f"must be {'an integer' if self.integer else 'a number'}, got {value!r}")
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            raise ConfigValueError(key, f"must be {'>' if self.low_open else '>='} {self.low}, got {value!r}")
        if self.high is not None and value > self.high:
            raise ConfigValueError(key, f"must be <= {self.high}, got {value!r}")


POSITIVE_INT = Number(low=0, low_open=True, integer=True)
COUNT = Number(low=0, integer=True)  # 0 allowed: "never" / "none"
UNIT = Number(low=0.0, high=1.0)


@dataclass(frozen=True)
class OneOf:
    options: tuple[Any, ...]

    def __call__(self, key: str, value: Any) -> None:
        if value not in self.options:
            raise ConfigValueError(key, f"must be one of {list(self.options)}, got {value!r}")


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
            f.metadata["check"](f"{obj.group}.{f.name}", getattr(obj, f.name))
