"""Per-member hyperparameters of a packed ensemble (docs/design.md, "Execution modes").

Members of one process share tensor shapes but may differ in every key of `mfsweep.sweep.cells.MEMBER_KEYS`.
`MemberValues` holds, for each such key, one value per member: numbers as an `(E,)` buffer (`(E, k)` for a
list-valued key like `trainer.betas`), anything else (`time.dist`) as a Python list. Every consumer reads the
key it needs by its config name, so a new per-member key needs no change here.
"""
from __future__ import annotations

from numbers import Real
from typing import Any, Mapping, Sequence

import torch


def _numeric(value: Any) -> bool:
    if isinstance(value, (list, tuple)):
        return all(_numeric(v) for v in value)
    return isinstance(value, Real) and not isinstance(value, bool)


def _buffer(key: str) -> str:
    return "hp_" + key.replace(".", "__")


class MemberValues(torch.nn.Module):
    """One value per member for each per-member config key, from a list of per-member `{key: value}` dicts."""

    def __init__(self, members: Sequence[Mapping[str, Any]]):
        super().__init__()
        if not members:
            raise ValueError("MemberValues needs at least one member")
        self.n_members = len(members)
        self.lists = {k: [m[k] for m in members] for k in members[0]}
        for key, values in self.lists.items():
            if _numeric(values):
                # float64 for per-member scalars computed from them (lr x schedule, beta2 ** step); float32 for
                # the ones the step uses as they are (loss weights, offset), so it casts nothing per step.
                exact = torch.tensor(values, dtype=torch.float64)
                self.register_buffer(_buffer(key), exact, persistent=False)
                self.register_buffer(_buffer(key) + "_f32", exact.float(), persistent=False)

    def __getitem__(self, key: str) -> torch.Tensor:
        """The `(E,)` (or `(E, k)`) float64 tensor of numeric `key`."""
        return getattr(self, _buffer(key))

    def f32(self, key: str) -> torch.Tensor:
        """`self[key]` in float32."""
        return getattr(self, _buffer(key) + "_f32")

    def list(self, key: str) -> list[Any]:
        return list(self.lists[key])

    def any_positive(self, key: str) -> bool:
        return any(v > 0 for v in self.lists[key])
