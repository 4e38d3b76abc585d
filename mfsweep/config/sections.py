"""The config sections the MeanFlow module reads, as dataclasses that check their own ranges.

Defaults live in one place, the YAML under conf/ (what `mfsweep-train --cfg job` prints and a recipe
overrides); these classes hold the keys' names, types and checks, and have no defaults of their own, so the two
can never disagree. A field of a per-member section (`PER_MEMBER`) is a key the members of one packed process
may differ in: adding one is a field here plus its default in conf/ (`mfsweep.config.members` derives the rest).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping

from mfsweep.config.checks import (COUNT, POSITIVE_INT, UNIT, Number, OneOf, bin_edges, check_fields, checked,
                                   optional, pair_in_unit)
from mfsweep.method.errors import ConfigValueError


def _time_dist(key: str, value: Any) -> None:
    from mfsweep.method.time import TIME_DISTRIBUTIONS  # the sampler's own list (torch: imported when checked)

    OneOf(TIME_DISTRIBUTIONS)(key, value)


# Learning-rate schedules by `trainer.lr_schedule`: the multiplier of the base lr at optimizer step `step` of
# `total` (the one list of names: the check below and `mfsweep.tasks.optim.lr_factor` both read it).
LR_SCHEDULES: dict[str, Callable[[int, int], float]] = {
    "constant": lambda step, total: 1.0,
    "cosine": lambda step, total: 0.5 * (1 + math.cos(math.pi * min(step, total) / total)),  # to 0 at max_steps
}


class Section:
    """A config section: `group` is its node in the composed config ("": the top level); `tasks` the values of
    `dataset.task` whose configs have it (None: every task's)."""

    group: ClassVar[str]
    tasks: ClassVar[tuple[str, ...] | None] = None

    def __post_init__(self) -> None:
        check_fields(self)

    @classmethod
    def from_node(cls, node: Mapping[str, Any]) -> Any:
        """The section from its config node, reading its fields only (the node may hold other keys)."""
        return cls(**{f.name: _plain(node[f.name]) for f in dataclasses.fields(cls)})


def _plain(value: Any) -> Any:
    """OmegaConf lists as tuples (frozen sections hash and compare by value)."""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "ListConfig":
        return tuple(_plain(v) for v in value)
    return value


@dataclass(frozen=True)
class OptimConfig(Section):
    """`trainer.*` of the optimizer: AdamW's lr, betas and weight decay, per-member gradient clipping (0: none),
    the evaluation EMA's decay, the lr schedule (`LR_SCHEDULES`) and its linear warm-up (0: none)."""

    group: ClassVar[str] = "trainer"
    lr: float = checked(Number(low=0.0, low_open=True))
    betas: tuple[float, float] = checked(pair_in_unit)
    weight_decay: float = checked(Number(low=0.0))
    grad_clip: float = checked(Number(low=0.0))
    ema_decay: float = checked(UNIT)
    lr_schedule: str = checked(OneOf(tuple(LR_SCHEDULES)))
    warmup_steps: int = checked(COUNT)


@dataclass(frozen=True)
class TimeConfig(Section):
    """`time.*`: the (t, r) distribution (`mfsweep.method.time.sample_t_r`)."""

    group: ClassVar[str] = "time"
    mu: float = checked(Number())
    sigma: float = checked(Number(low=0.0, low_open=True))
    ratio: float = checked(UNIT)
    dist: str = checked(_time_dist)


@dataclass(frozen=True)
class LossConfig(Section):
    """`loss.*`: MeanFlow's adaptive weight (power p, eps), the flow-matching anchor's weight lambda and the
    offset D at which the EMA proxy and the anchor evaluate u (docs/method.md 3)."""

    group: ClassVar[str] = "loss"
    adaptive_p: float = checked(Number(low=0.0))
    adaptive_eps: float = checked(Number(low=0.0, low_open=True))
    anchor_weight: float = checked(Number(low=0.0))
    offset: float = checked(UNIT)


@dataclass(frozen=True)
class GradVarConfig(Section):
    """Gradient-variance measurement (docs/method.md 5): every `every` steps (0: never), `replicas` minibatches of
    `batch_size` from the cell's own gradient-variance stream."""

    group: ClassVar[str] = "grad_var"
    every: int = checked(COUNT)
    replicas: int = checked(Number(low=2, integer=True))
    batch_size: int = checked(POSITIVE_INT)


@dataclass(frozen=True)
class DiagnosticsConfig(Section):
    """`diagnostics.*`: every `every` steps (0: never) a batch of `batch_size` samples with r < t from the
    cell's own diagnostics stream; `n_probes` Hutchinson probes; `n_fluctuations` draws of delta per z for the
    matrix form; `bins` the edges of the t - r bins (0.0 to 1.0)."""

    group: ClassVar[str] = "diagnostics"
    every: int = checked(COUNT)
    batch_size: int = checked(POSITIVE_INT)
    n_probes: int = checked(POSITIVE_INT)
    n_fluctuations: int = checked(POSITIVE_INT)
    bins: tuple[float, ...] = checked(bin_edges)


@dataclass(frozen=True)
class GuidanceConfig(Section):
    """Label dropout and guidance-in-training (docs/method.md 2): `v_g` on t in [t_min, t_max] for kept labels."""

    group: ClassVar[str] = "guidance"
    tasks: ClassVar[tuple[str, ...] | None] = ("latent_dit",)
    label_dropout: float = checked(UNIT)
    omega: float = checked(Number())
    mix: float = checked(Number())
    t_min: float = checked(UNIT)
    t_max: float = checked(UNIT)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.t_min > self.t_max:
            raise ConfigValueError("guidance.t_min", f"must be <= guidance.t_max ({self.t_max}), got {self.t_min}")

    @property
    def enabled(self) -> bool:
        return not (self.omega == 1.0 and self.mix == 0.0)


def _existing_file(key: str, value: Any) -> None:
    if not Path(str(value)).expanduser().is_file():
        raise ConfigValueError(key, f"file not found: {Path(str(value)).expanduser()}")


@dataclass(frozen=True)
class FIDConfig(Section):
    """`metrics.fid`: the feature network (`inception` from a local weights file, or the demo's `classifier`),
    optional precomputed reference statistics (an .npz with `mu`, `sigma`, e.g. ADM's ImageNet 256 batch),
    the cache folder and the batch size for generation, decoding and features."""

    group: ClassVar[str] = "metrics.fid"
    tasks: ClassVar[tuple[str, ...] | None] = ("latent_dit",)
    features: str = checked(OneOf(("inception", "classifier")))
    inception_weights: str | None = dataclasses.field()
    reference_stats: str | None = checked(optional(_existing_file))
    cache_dir: str = dataclasses.field()
    batch_size: int = checked(POSITIVE_INT)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.features == "inception":
            from mfsweep.metrics.fid import INCEPTION_WEIGHTS_KEY, check_inception_weights

            try:
                check_inception_weights(self.inception_weights)
            except ValueError as err:
                message = str(err).removeprefix(f"{INCEPTION_WEIGHTS_KEY}: ").removeprefix(f"{INCEPTION_WEIGHTS_KEY} ")
                raise ConfigValueError(INCEPTION_WEIGHTS_KEY, message) from None



@dataclass(frozen=True)
class LoopConfig(Section):
    """`trainer.*` of the training loop: steps, the (global) batch, how often the history and checkpoints are
    written (checkpoint_every 0: only at the end and on SIGTERM)."""

    group: ClassVar[str] = "trainer"
    max_steps: int = checked(POSITIVE_INT)
    batch_size: int = checked(POSITIVE_INT)
    log_every: int = checked(POSITIVE_INT)
    checkpoint_every: int = checked(COUNT)


@dataclass(frozen=True)
class VectorLoopConfig(Section):
    """`trainer.compile` of the vector tasks' packed step (`mfsweep.config.arguments.use_compile`)."""

    group: ClassVar[str] = "trainer"
    tasks: ClassVar[tuple[str, ...] | None] = ("toy", "dgmm")
    compile: Any = checked(OneOf(("auto", True, False)))


@dataclass(frozen=True)
class DistributedConfig(Section):
    """`trainer.*` of the latent DiT task's Lightning run: nodes, DDP, precision, CPU threads (null: torch's)."""

    group: ClassVar[str] = "trainer"
    tasks: ClassVar[tuple[str, ...] | None] = ("latent_dit",)
    num_nodes: int = checked(POSITIVE_INT)
    # Not ddp_spawn: its workers' history and records would stay in the spawned processes.
    strategy: str = checked(OneOf(("auto", "ddp")))
    precision: str = checked(OneOf(("32-true", "bf16-mixed")))
    threads: int | None = checked(optional(Number(low=1, integer=True)))


@dataclass(frozen=True)
class EvalConfig(Section):
    """`eval.*`: the final evaluation (`n_samples` points, `n_projections` directions from `projection_seed`,
    `n_steps` sampler steps) and the intermediate one every `every` steps (0: only at the end) on
    `every_n_samples` points."""

    group: ClassVar[str] = "eval"
    n_samples: int = checked(POSITIVE_INT)
    n_projections: int = checked(POSITIVE_INT)
    projection_seed: int = checked(COUNT)
    n_steps: int = checked(POSITIVE_INT)
    every: int = checked(COUNT)
    every_n_samples: int = checked(POSITIVE_INT)


@dataclass(frozen=True)
class FIDEvalConfig(Section):
    """`eval.*` of FID: the samples of the final and the intermediate scores (a covariance needs two) and the
    final score's evaluation draw (its generated noise). `eval.n_splits`, the jackknife's blocks, depends on the
    dataset's classes: `check_latent` checks it."""

    group: ClassVar[str] = "eval"
    tasks: ClassVar[tuple[str, ...] | None] = ("latent_dit",)
    fid_samples: int = checked(Number(low=2, integer=True))
    every_n_samples: int = checked(Number(low=2, integer=True))
    draw: int = checked(COUNT)


# `sweep.rerun`: which recorded statuses a launch trains again.
RERUN_CHOICES = {"none": (), "failed": ("failed", "diverged"), "all": ("completed", "failed", "diverged")}


def _packed_keys(key: str, value: Any) -> None:
    from mfsweep.config.members import check_packed_keys

    if value is not None:
        check_packed_keys([str(k) for k in value] if isinstance(value, (list, tuple)) else [value])


@dataclass(frozen=True)
class SweepConfig(Section):
    """`sweep.*`: the execution mode, which keys pack into one process (null: every per-member key), the W&B
    group, what a re-launch trains again, and whether it races rounds of seeds (mfsweep/sweep/race.py)."""

    group: ClassVar[str] = "sweep"
    mode: str = checked(OneOf(("per_run", "packed")))
    packed_keys: tuple[str, ...] | None = checked(_packed_keys)
    name: str | None = dataclasses.field()
    rerun: str = checked(OneOf(tuple(RERUN_CHOICES)))
    until: str = checked(OneOf(("grid", "resolved")))
    round_seeds: int = checked(Number(low=1, integer=True))
    max_seeds: int = checked(Number(low=1, integer=True))


@dataclass(frozen=True)
class VerdictConfig(Section):
    """`verdict.*`: the equivalence margin of the answers, a share of alpha = 0's mean metric (docs/method.md 7)."""

    group: ClassVar[str] = "verdict"
    margin: float = checked(Number(low=0.0, low_open=True, high=1.0))


@dataclass(frozen=True)
class LoggerConfig(Section):
    group: ClassVar[str] = "logger"
    name: str = checked(OneOf(("wandb", "csv", "none")))


@dataclass(frozen=True)
class GridConfig(Section):
    """The top-level `seed` (a grid axis; `alpha.value`, the other, is the schedule's)."""

    group: ClassVar[str] = ""
    seed: int = checked(COUNT)


# Sections whose every key may differ between the members of one packed process: scalars (or Adam's pair) that
# change no tensor shape, held by the engine as one value per member.
PER_MEMBER: tuple[type[Section], ...] = (OptimConfig, TimeConfig, LossConfig)
# Job-level sections the module reads.
JOB: tuple[type[Section], ...] = (GradVarConfig, DiagnosticsConfig)


# Every section a composed config is checked against (`check_sections`).
SECTIONS: tuple[type[Section], ...] = PER_MEMBER + JOB + (
    LoopConfig, VectorLoopConfig, DistributedConfig, EvalConfig, FIDEvalConfig, GuidanceConfig, FIDConfig,
    SweepConfig, VerdictConfig, LoggerConfig, GridConfig)


def section_values(*sections: Section) -> dict[str, Any]:
    """The sections' values by config key (`trainer.lr`), lists as lists."""
    return {f"{s.group}.{f.name}": (list(v) if isinstance(v := getattr(s, f.name), tuple) else v)
            for s in sections for f in dataclasses.fields(s)}
