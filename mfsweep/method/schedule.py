"""Alpha schedules: the tangent-mixing coefficient of docs/method.md 3 as a function of the training step,
one value per ensemble member (config group `alpha`, one class per YAML, picked by `_target_`).

`v_tan = (1 - alpha) v_c + alpha u_bar`. A schedule gives `alpha(step)`, `(E,)`, or `alpha(step, h)` shaped
like `h = t - r` (one value per sample); the adaptive ones also read the latest diagnostics (`observe`) and
follow the predicted optimum alpha* of docs/method.md 4. Every key may differ per member (`component.py`).
Steps count optimizer steps from 0 (the trainer's `global_step` when the step's loss is computed).
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import torch

from mfsweep.method.component import (
    ConfigValueError,
    Requires,
    check_positive_int,
    check_range,
    infer_members,
    member_spec,
    member_values,
    member_vectors,
)
from mfsweep.method.theory import alpha_star


class AlphaSchedule:
    """Base class: alpha per member for a step, its record (spec, trajectory) and checkpoint state.

    A subclass lists its config keys in `keys` (its constructor arguments, which its YAML sets), the integer
    ones in `integer_keys` and list-valued ones in `vector_keys`, implements `_value(step) -> (E,)` float64,
    `bounds()` and `check()`, and calls `_init_keys(n_members, **keys)` from its constructor.
    """

    group = "alpha"
    name = ""
    keys: tuple[str, ...] = ()
    integer_keys: tuple[str, ...] = ()
    vector_keys: tuple[str, ...] = ()
    shared_keys: tuple[str, ...] = ()   # keys of `keys` that take one value for all members (adaptive's estimate)
    value_key: str | None = None   # the key that is alpha itself (constant's `value`), for error messages
    requires = Requires()

    @classmethod
    def member_keys(cls) -> tuple[str, ...]:
        """The keys that may differ per member (a packed sweep over them trains one member per value)."""
        return tuple(k for k in cls.keys if k not in cls.shared_keys)

    def _init_keys(self, n_members: int | None, **keys: Any) -> None:
        self.n_members = infer_members(self.group, keys, n_members, self.vector_keys)
        for key, value in keys.items():
            convert = member_vectors if key in self.vector_keys else member_values
            setattr(self, key, convert(self.key(key), value, self.n_members, integer=key in self.integer_keys))
        self._traj = {"step": -1, "start": torch.zeros(self.n_members, dtype=torch.float64),
                      "end": torch.zeros(self.n_members, dtype=torch.float64),
                      "sum": torch.zeros(self.n_members, dtype=torch.float64), "count": 0}
        self.check()

    def key(self, name: str) -> str:
        """The config key of constructor argument `name` (`alpha.end`)."""
        return f"{self.group}.{name}"

    # --- what the trainer calls -------------------------------------------------------------------
    def alpha(self, step: int, h: torch.Tensor | None = None) -> torch.Tensor:
        """alpha at `step`: `(E,)` float32, or with `h = t - r` (`(E, B)`, or `(B,)` for one member without a
        member axis) one value per sample shaped like `h`, on its device. The first call at each new step adds
        the members' values to the trajectory."""
        value = self._value(step)
        self._track(step, value)
        if h is None:
            return value.float()
        return self._per_sample(step, value, h)

    def observe(self, step: int, values: Mapping[str, torch.Tensor], edges: Sequence[float] | None = None) -> None:
        """The diagnostics measured at `step` (`mfsweep.tasks.diagnostics.summarise` of the summed statistics):
        each value `(E, n_bins + 1)` (per bin of t - r, the last column the whole batch) or `(E,)` (the whole
        batch); `edges` the bins' edges. Only the adaptive schedules use them."""

    def wants_diagnostics(self, step: int) -> bool:
        """Whether the trainer should measure diagnostics at `step` and `observe` them."""
        return False

    def log_values(self, step: int) -> dict[str, torch.Tensor]:
        """Per-member values to log at `step` (`train/alpha`, `(E,)` each)."""
        return {"train/alpha": self._value(step).float()}

    # --- the record and the checks ---------------------------------------------------------------
    def spec(self, member: int | None = None) -> dict[str, Any]:
        """`{"name": ..., <its keys>}` for the record: member `member`'s values, or every member's (a key that
        differs per member as a list)."""
        return {"name": self.name} | member_spec({k: getattr(self, k) for k in self.keys}, member)

    def trajectory(self, member: int | None = None) -> dict[str, Any]:
        """alpha's trajectory over the steps trained so far: `start`, `end`, `mean` (floats for one member,
        lists for all; None before the first step)."""
        tr = self._traj
        if not tr["count"]:
            return {"start": None, "end": None, "mean": None}
        values = {"start": tr["start"], "end": tr["end"], "mean": tr["sum"] / tr["count"]}
        return {k: v[member].item() if member is not None else v.tolist() for k, v in values.items()}

    def bounds(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The lowest and highest alpha each member can take, `(E,)` each."""
        raise NotImplementedError

    def check(self) -> None:
        """Raise `ConfigValueError` naming the key of the first invalid value."""

    # --- checkpoints ------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """What changes while training (the trajectory; the adaptive state), for a checkpoint."""
        return {"trajectory": {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in self._traj.items()}}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._traj = {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in state["trajectory"].items()}

    # --- for subclasses ---------------------------------------------------------------------------
    def _value(self, step: int) -> torch.Tensor:
        raise NotImplementedError

    def _per_sample(self, step: int, value: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """`value` (E,) broadcast to the samples of `h`."""
        return value.to(device=h.device, dtype=torch.float32).view(-1, *([1] * (h.dim() - 1))).expand(h.shape)

    def _track(self, step: int, value: torch.Tensor) -> None:
        tr = self._traj
        if step <= tr["step"]:
            return
        if not tr["count"]:
            tr["start"] = value.double().clone()
        tr["end"], tr["sum"] = value.double().clone(), tr["sum"] + value.double()
        tr["step"], tr["count"] = step, tr["count"] + 1

    def _check_alpha(self, *names: str) -> None:
        for name in names:
            check_range(self.key(name), getattr(self, name), low=0.0, high=1.0)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.spec()})"


# --- fixed schedules --------------------------------------------------------------------------------

class ConstantAlpha(AlphaSchedule):
    """`alpha = value` at every step (a list of values: one per member, a packed grid)."""

    name, keys, value_key = "constant", ("value",), "alpha.value"

    def __init__(self, value: Any = 0.0, n_members: int | None = None):
        self._init_keys(n_members, value=value)

    def check(self) -> None:
        self._check_alpha("value")

    def bounds(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.value, self.value

    def _value(self, step: int) -> torch.Tensor:
        return self.value.clone()


class _Ramp(AlphaSchedule):
    """From `start` (up to step `begin`) to `end` (from step `end_step` on); `_shape(frac)` in between."""

    keys, integer_keys = ("start", "end", "begin", "end_step"), ("begin", "end_step")

    def __init__(self, start: Any = 0.0, end: Any = 1.0, begin: Any = 0, end_step: Any = 1000,
                 n_members: int | None = None):
        self._init_keys(n_members, start=start, end=end, begin=begin, end_step=end_step)

    def check(self) -> None:
        self._check_alpha("start", "end")
        check_positive_int(self.key("begin"), self.begin, zero=True)
        bad = self.end_step <= self.begin
        if bool(bad.any()):
            raise ConfigValueError(self.key("end_step"), f"must be > {self.key('begin')} ({self.begin[bad][0].item()}), "
                                                          f"got {self.end_step[bad][0].item()}")

    def bounds(self) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.minimum(self.start, self.end), torch.maximum(self.start, self.end)

    def _value(self, step: int) -> torch.Tensor:
        frac = ((step - self.begin.double()) / (self.end_step - self.begin).double()).clamp(0.0, 1.0)
        return self.start + (self.end - self.start) * self._shape(frac)

    def _shape(self, frac: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class LinearAlpha(_Ramp):
    """`start + (end - start) * frac`, `frac = clamp((step - begin) / (end_step - begin), 0, 1)`."""

    name = "linear"

    def _shape(self, frac: torch.Tensor) -> torch.Tensor:
        return frac


class CosineAlpha(_Ramp):
    """`start + (end - start) * (1 - cos(pi frac)) / 2`: flat at both ends, `frac` as for `linear`."""

    name = "cosine"

    def _shape(self, frac: torch.Tensor) -> torch.Tensor:
        return (1 - torch.cos(math.pi * frac)) / 2


class SigmoidAlpha(AlphaSchedule):
    """AlphaFlow-style curriculum: `start + (end - start) * sigmoid(gamma * (step - mid) / width)`, set to
    `start` (`end`) where it is within `clamp` of it, so the two ends are exact for a finite gamma."""

    name = "sigmoid"
    keys, integer_keys = ("start", "end", "mid", "width", "gamma", "clamp"), ("mid", "width")

    def __init__(self, start: Any = 0.0, end: Any = 1.0, mid: Any = 2000, width: Any = 4000, gamma: Any = 25.0,
                 clamp: Any = 0.005, n_members: int | None = None):
        self._init_keys(n_members, start=start, end=end, mid=mid, width=width, gamma=gamma, clamp=clamp)

    def check(self) -> None:
        self._check_alpha("start", "end")
        check_positive_int(self.key("mid"), self.mid, zero=True)
        check_positive_int(self.key("width"), self.width)
        check_range(self.key("gamma"), self.gamma, low=0.0, low_open=True)
        check_range(self.key("clamp"), self.clamp, low=0.0, high=0.5)

    def bounds(self) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.minimum(self.start, self.end), torch.maximum(self.start, self.end)

    def _value(self, step: int) -> torch.Tensor:
        raw = self.start + (self.end - self.start) * torch.sigmoid(self.gamma * (step - self.mid) / self.width)
        raw = torch.where((raw - self.start).abs() < self.clamp, self.start, raw)
        return torch.where((raw - self.end).abs() < self.clamp, self.end, raw)


class StepAlpha(AlphaSchedule):
    """Piecewise constant: `values[0]` before `milestones[0]`, `values[i]` from `milestones[i - 1]` on
    (`len(values) = len(milestones) + 1`; milestones increasing steps)."""

    name = "step"
    keys, integer_keys, vector_keys = ("milestones", "values"), ("milestones",), ("milestones", "values")

    def __init__(self, milestones: Any = (2000,), values: Any = (0.0, 1.0), n_members: int | None = None):
        self._init_keys(n_members, milestones=milestones, values=values)

    def check(self) -> None:
        self._check_alpha("values")
        check_positive_int(self.key("milestones"), self.milestones, zero=True)
        if self.values.shape[1] != self.milestones.shape[1] + 1:
            raise ConfigValueError(self.key("values"), f"must have one more entry than {self.key('milestones')} "
                                                        f"({self.milestones.shape[1]}), got {self.values.shape[1]}")
        if bool((self.milestones.diff(dim=1) <= 0).any()):
            raise ConfigValueError(self.key("milestones"), f"must be increasing, got {self.milestones[0].tolist()}")

    def bounds(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.values.min(1).values, self.values.max(1).values

    def _value(self, step: int) -> torch.Tensor:
        index = (self.milestones <= step).sum(1, keepdim=True)          # (E, 1): milestones passed
        return self.values.gather(1, index).squeeze(1)


# --- adaptive schedules (docs/method.md 4) ----------------------------------------------------------

ESTIMATES = {"scalar": ("c", "sigma2", "bias2"), "upper_bound": ("alpha_star_ub",), "matrix": ("alpha_star_m",)}


class AdaptiveAlpha(AlphaSchedule):
    """alpha follows each member's predicted optimum alpha* (docs/method.md 4), measured online.

    `init` for the first `warmup` steps; then at every step that is a multiple of `every` (where the trainer
    measures diagnostics, `wants_diagnostics`) the new estimate, clipped to `[low, high]`, enters an EMA:
    `alpha <- smoothing * alpha + (1 - smoothing) * clip(alpha*, low, high)`, which starts from `init`.
    `estimate`: `scalar`, `alpha* = clip(kappa * sigma2 / (sigma2 + bias2), 0, 1)` with
    `kappa = 1 - j_s / (h j_F^2)` (from the diagnostics' aggregated `c`, `sigma2`, `bias2`); `upper_bound`, the
    matrix-form bound alpha*_ub; `matrix`, alpha*_M (both need an exact posterior). A member whose estimate is
    not finite (diverged, or nothing measured) keeps its alpha. The output is clipped to `[low, high]`.
    """

    name = "adaptive"
    keys = ("every", "init", "warmup", "low", "high", "smoothing", "estimate")
    integer_keys, shared_keys = ("every", "warmup"), ("estimate",)

    def __init__(self, every: Any = 200, init: Any = 0.0, warmup: Any = 500, low: Any = 0.0, high: Any = 1.0,
                 smoothing: Any = 0.5, estimate: str = "scalar", n_members: int | None = None):
        if isinstance(estimate, Sequence) and not isinstance(estimate, str):  # a packed sweep over it
            raise ConfigValueError(self.key("estimate"), f"takes one value for all the members of a process, got "
                                                         f"{list(estimate)}: sweep it with sweep.mode=per_run, or "
                                                         "launch one packed sweep per value")
        if estimate not in ESTIMATES:
            raise ConfigValueError(self.key("estimate"), f"must be one of {list(ESTIMATES)}, got {estimate!r}")
        self.estimate = estimate
        self._init_keys(n_members, every=every, init=init, warmup=warmup, low=low, high=high, smoothing=smoothing)
        self.state = self.init.clone().unsqueeze(1)   # (E, K): K = 1 here, one per bin of t - r in adaptive_h
        self.edges: list[float] | None = None

    @property
    def requires(self) -> Requires:  # type: ignore[override]
        return Requires(diagnostics=True, posterior=self.estimate != "scalar")

    def check(self) -> None:
        check_positive_int(self.key("every"), self.every)
        check_positive_int(self.key("warmup"), self.warmup, zero=True)
        self._check_alpha("init", "low", "high")
        bad = self.low > self.high
        if bool(bad.any()):
            raise ConfigValueError(self.key("high"), f"must be >= {self.key('low')} ({self.low[bad][0].item()}), "
                                                      f"got {self.high[bad][0].item()}")
        check_range(self.key("smoothing"), self.smoothing, low=0.0, high=1.0, high_open=True)

    def bounds(self) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.minimum(self.init, self.low), torch.maximum(self.init, self.high)

    def wants_diagnostics(self, step: int) -> bool:
        return bool(((step % self.every == 0) & (step >= self.warmup)).any())

    def target(self, values: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The estimate alpha* per member and column, `(E, K)` float64, from summarised diagnostics."""
        missing = [k for k in ESTIMATES[self.estimate] if k not in values]
        if missing:
            raise KeyError(f"alpha=adaptive (estimate={self.estimate}) needs the diagnostics {missing}")
        cols = {k: self._columns(torch.as_tensor(values[k]).double().cpu()) for k in ESTIMATES[self.estimate]}
        if self.estimate == "scalar":
            return alpha_star(cols["c"], cols["sigma2"], cols["bias2"])
        return cols[ESTIMATES[self.estimate][0]]

    def _columns(self, value: torch.Tensor) -> torch.Tensor:
        """The whole-batch column, `(E, 1)`."""
        return value.reshape(self.n_members, -1)[:, -1:]

    def observe(self, step: int, values: Mapping[str, torch.Tensor], edges: Sequence[float] | None = None) -> None:
        target = self.target(values).clamp(self.low[:, None], self.high[:, None])
        state = self.state.expand_as(target)
        due = ((step % self.every == 0) & (step >= self.warmup))[:, None] & target.isfinite()
        self.state = torch.where(due, self.smoothing[:, None] * state + (1 - self.smoothing[:, None]) * target, state)

    def _current(self, step: int) -> torch.Tensor:
        """`(E, K)`: `init` during the warm-up, else the smoothed estimate clipped to `[low, high]`."""
        held = self.state.clamp(self.low[:, None], self.high[:, None])
        return torch.where((step < self.warmup)[:, None], self.init[:, None], held)

    def _value(self, step: int) -> torch.Tensor:
        return self._current(step).mean(1)

    def state_dict(self) -> dict[str, Any]:
        return super().state_dict() | {"state": self.state.clone(), "edges": self.edges}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self.state, self.edges = state["state"].clone(), state["edges"]


class AdaptiveHAlpha(AdaptiveAlpha):
    """`adaptive` per bin of h = t - r: each sample gets its member's alpha for the bin its h falls in, each
    bin following that bin's alpha* (the diagnostics' per-bin values; bins are `diagnostics.bins`, given to
    `observe`). Before the first estimate every bin is at `init`; an empty bin keeps its alpha.
    `alpha(step)` without h (the logged `train/alpha`) is the mean over bins; `train/alpha_h<i>` per bin."""

    name = "adaptive_h"

    def _columns(self, value: torch.Tensor) -> torch.Tensor:
        if value.dim() != 2:
            raise ValueError(f"alpha=adaptive_h needs per-bin diagnostics (E, n_bins + 1), got {tuple(value.shape)}")
        return value[:, :-1]

    def observe(self, step: int, values: Mapping[str, torch.Tensor], edges: Sequence[float] | None = None) -> None:
        if edges is None:
            raise ValueError("alpha=adaptive_h needs the bin edges of the diagnostics")
        edges = [float(e) for e in edges]
        if self.edges is not None and edges != self.edges:
            raise ValueError(f"alpha=adaptive_h: the bin edges changed from {self.edges} to {edges}")
        self.edges = edges
        super().observe(step, values, edges)

    def _per_sample(self, step: int, value: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        current = self._current(step).float().to(h.device)                   # (E, n_bins), or (E, 1)
        if self.edges is None or current.shape[1] == 1:
            return super()._per_sample(step, current[:, 0], h)
        inner = torch.as_tensor(self.edges[1:-1], dtype=h.dtype, device=h.device)
        index = torch.bucketize(h, inner, right=True)                          # bins [lo, hi), as the diagnostics
        member = torch.arange(self.n_members, device=h.device).view(-1, *([1] * (h.dim() - 1)))
        return current[member, index]

    def log_values(self, step: int) -> dict[str, torch.Tensor]:
        current = self._current(step).float()
        per_bin = {f"train/alpha_h{i}": current[:, i] for i in range(current.shape[1])} if self.edges else {}
        return super().log_values(step) | per_bin
