"""The one error of a bad config value, raised by whichever part owns the key (a schedule, a proxy, a config
section, a dataset, a model, a task), and the value checks they share. Free of torch, so the command line can
catch it without paying for it."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class ConfigValueError(ValueError):
    """A bad value of a config key; the message starts with the key (`alpha.end must be in [0, 1], got 2`).
    A message starting with `=` names a choice of the group (`tangent=oracle needs ...`). The command line shows
    it as one line, `config key 'alpha.end': must be in [0, 1], got 2`."""

    def __init__(self, key: str, message: str):
        super().__init__(f"{key}{'' if message.startswith('=') else ' '}{message}")
        self.key, self.message = key, message

    def __reduce__(self) -> tuple:
        # picklable with both arguments (a submitit job hands its exception back to the launcher)
        return type(self), (self.key, self.message)


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
