"""What the configurable parts of the method (alpha schedules, tangent proxies) share: the error that names
the config key (`mfsweep.method.errors`), and keys whose values may differ per ensemble member.

A packed run trains E members in one process, and any scalar key may differ between them. So every key of a
schedule or a proxy is read as one value per member: a number (shared by all members), or a list of E
numbers (one per member), or a list of one number; it is stored as an `(E,)` tensor. Keys that are
themselves lists (a step schedule's milestones) are `(K,)` shared or E lists of K per member, stored `(E, K)`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import torch

from mfsweep.method.errors import ConfigValueError  # noqa: F401  (the components' error)


@dataclass(frozen=True)
class Requires:
    """What a component needs from the rest of the run: `oracle` an exact marginal velocity from the dataset;
    `zero_alpha` alpha = 0 for every member (no proxy to mix in); `diagnostics` online diagnostics fed through
    `observe`; `posterior` diagnostics with exact fluctuation draws (the matrix-form alpha*)."""

    oracle: bool = False
    zero_alpha: bool = False
    diagnostics: bool = False
    posterior: bool = False


def _is_sequence(value: Any) -> bool:
    return isinstance(value, Iterable) and not isinstance(value, (str, bytes, Mapping, torch.Tensor))


def _length(value: Any) -> int | None:
    """The member count a per-member value implies: E for a list of E, None for a shared value."""
    if isinstance(value, torch.Tensor):
        return value.shape[0] if value.dim() >= 1 else None
    return len(list(value)) if _is_sequence(value) else None


def infer_members(group: str, keys: Mapping[str, Any], n_members: int | None, vector_keys: tuple[str, ...] = ()) -> int:
    """The member count E: `n_members` when given, else the length of the per-member keys (1 if none is).
    A vector key (a list by nature) is per-member only as a list of lists."""
    if n_members is not None:
        if isinstance(n_members, bool) or not isinstance(n_members, int) or n_members < 1:
            raise ValueError(f"n_members must be a positive int, got {n_members!r}")
        return n_members
    lengths = set()
    for key, value in keys.items():
        if key in vector_keys:
            value = list(value) if _is_sequence(value) else []  # not a list: member_vectors says so
            if value and all(_is_sequence(v) for v in value):
                lengths.add(len(value))
        elif (n := _length(value)) is not None and n != 1:
            lengths.add(n)
    if len(lengths) > 1:
        raise ConfigValueError(group, f"keys give different member counts {sorted(lengths)}: "
                                      f"a per-member key has one value per member")
    return lengths.pop() if lengths else 1


def _number(key: str, value: Any, integer: bool) -> float | int:
    if isinstance(value, torch.Tensor):
        value = value.item()
    ok = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok or (not integer and not math.isfinite(value)):
        raise ConfigValueError(key, f"must be {'an integer' if integer else 'a finite number'}, got {value!r}")
    return value


def member_values(key: str, value: Any, n_members: int, *, integer: bool = False) -> torch.Tensor:
    """A scalar key as `(E,)`: float64 (int64 for `integer`) from a number, a list of 1 or E, or a tensor."""
    items = list(value.flatten()) if isinstance(value, torch.Tensor) else list(value) if _is_sequence(value) else [value]
    if len(items) not in (1, n_members):
        raise ConfigValueError(key, f"has {len(items)} values, but there are {n_members} members "
                                    f"(give one value, or one per member)")
    numbers = [_number(key, v, integer) for v in items]
    out = torch.tensor(numbers, dtype=torch.int64 if integer else torch.float64)
    return out.expand(n_members).clone()


def member_vectors(key: str, value: Any, n_members: int, *, integer: bool = False) -> torch.Tensor:
    """A list key as `(E, K)`: one list of K shared by all members, or E lists of K (one per member)."""
    items = list(value) if _is_sequence(value) else None
    if items is None:
        raise ConfigValueError(key, f"must be a list, got {value!r}")
    rows = [list(v) for v in items] if items and all(_is_sequence(v) for v in items) else [items]
    if len(rows) not in (1, n_members):
        raise ConfigValueError(key, f"has {len(rows)} lists, but there are {n_members} members "
                                    f"(give one list, or one per member)")
    if len({len(r) for r in rows}) != 1:
        raise ConfigValueError(key, f"per-member lists must have one length, got {[len(r) for r in rows]}")
    numbers = [[_number(key, v, integer) for v in r] for r in rows]
    out = torch.tensor(numbers, dtype=torch.int64 if integer else torch.float64).reshape(len(rows), -1)
    return out.expand(n_members, -1).clone()


def check_range(key: str, values: torch.Tensor, *, low: float | None = None, high: float | None = None,
                low_open: bool = False, high_open: bool = False) -> None:
    """Every entry of `values` in the interval; the message names the key, the interval and the bad value."""
    bad = torch.zeros_like(values, dtype=torch.bool)
    if low is not None:
        bad |= values <= low if low_open else values < low
    if high is not None:
        bad |= values >= high if high_open else values > high
    if bool(bad.any()):
        first = values[bad][0].item()
        lo = "-inf" if low is None else _fmt(low)
        hi = "inf" if high is None else _fmt(high)
        interval = f"{'(' if low_open or low is None else '['}{lo}, {hi}{')' if high_open or high is None else ']'}"
        raise ConfigValueError(key, f"must be in {interval}, got {_fmt(first)}{_where(values, bad)}")


def check_positive_int(key: str, values: torch.Tensor, *, zero: bool = False) -> None:
    """Every entry a positive (or, with `zero`, non-negative) integer."""
    bad = values < 0 if zero else values < 1
    if bool(bad.any()):
        kind = "a non-negative integer" if zero else "a positive integer"
        raise ConfigValueError(key, f"must be {kind}, got {values[bad][0].item()}{_where(values, bad)}")


def _where(values: torch.Tensor, bad: torch.Tensor) -> str:
    """` (member i)` when the values differ per member, so the message points at the bad one."""
    if values.dim() == 0 or values.shape[0] == 1 or bool((values == values[0]).all()):
        return ""
    return f" (member {int(torch.nonzero(bad)[0][0])})"


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def member_spec(values: Mapping[str, Any], member: int | None) -> dict[str, Any]:
    """Plain-Python key values for a record: member `member`'s values, or (None) each key shared as one
    value when all members agree, else a list with one value per member."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if not isinstance(value, torch.Tensor):
            out[key] = value
            continue
        rows = value.tolist()
        if member is not None:
            out[key] = rows[member]
        else:
            out[key] = rows[0] if all(r == rows[0] for r in rows) else rows
    return out
