"""Grid cells, their per-member values and their folders.

A job trains the cells of its packed keys: every combination of the values of `sweep.packed_keys` that the job
names (lists in packed mode, single values per run), e.g. `trainer.lr x time.ratio x alpha.value x seed`. A
cell is `(setting, alpha, seed)`, where the setting holds its values of the other named per-member keys. Its
folder is `<sweep root>/<context>/<setting>/alpha=A,seed=S`: the context names the job's other overrides (e.g.
`dataset=swiss_roll`), the setting the cell's own values (`time.ratio=0.25,trainer.lr=0.001`, absent when the
job names no per-member key besides alpha and seed). So the folder depends only on what the cell is, not on
which job or mode trained it: a re-launched sweep finds its finished cells there and skips them.
"""
from __future__ import annotations

import hashlib
import itertools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from omegaconf import DictConfig, OmegaConf

from mfsweep.config.members import GRID_KEYS, is_packed, member_values, packs
from mfsweep.config.sections import RERUN_CHOICES
from mfsweep.sweep.record import UnreadableRecord, read_record, round_alpha

# Overrides that do not change what a cell computes, so they must not change its folder.
NEUTRAL_PREFIXES = ("hydra", "launcher", "logger", "sweep.", "trainer.progress", "trainer.accelerator",
                    "trainer.devices", "trainer.compile")
# File systems cap a folder name at 255 bytes; a longer name keeps a readable prefix and a hash of the whole.
MAX_CONTEXT = 240


@dataclass(frozen=True)
class Cell:
    """One member of a job: its per-member values besides alpha and seed (`setting`, sorted by key)."""

    alpha: float | None  # None for a schedule other than constant: alpha varies while training
    seed: int
    dir: Path
    setting: tuple[tuple[str, Any], ...] = ()

    @property
    def name(self) -> str:
        """Unique within a job: the setting folder (if any) and `alpha=A,seed=S`."""
        own = cell_name(self.alpha, self.seed)
        return f"{setting_name(self.setting)}/{own}" if self.setting else own

    def values(self) -> dict[str, Any]:
        """Every per-member key this cell fixes, alpha (if constant) and seed included."""
        alpha = {} if self.alpha is None else {"alpha.value": self.alpha}
        return alpha | {"seed": self.seed} | dict(self.setting)


def cell_name(alpha: float | None, seed: int) -> str:
    """`alpha=A,seed=S`, or `seed=S` under a schedule (the folder above names it: `alpha=cosine`)."""
    return f"seed={int(seed)}" if alpha is None else f"alpha={round_alpha(alpha):g},seed={int(seed)}"


def format_value(value: Any) -> str:
    """A value as it appears in a folder name: floats as their shortest round-trip repr (1e-05, 0.001), lists
    joined with `_`."""
    if isinstance(value, (list, tuple)):
        return "_".join(format_value(v) for v in value)
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _short(name: str) -> str:
    """`name`, or for a long one its first characters plus `~` and a hash of the whole (same input, same name)."""
    if len(name) <= MAX_CONTEXT:
        return name
    digest = hashlib.sha1(name.encode()).hexdigest()[:12]
    return f"{name[:MAX_CONTEXT - len(digest) - 1]}~{digest}"


def _clean(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=,\-+]", "_", text)


def setting_name(setting: Iterable[tuple[str, Any]]) -> str:
    """The folder of a setting: `time.ratio=0.25,trainer.lr=0.001` (sorted by key; shortened when long)."""
    return _short(",".join(_clean(f"{k}={format_value(v)}") for k, v in sorted(setting)))


def override_key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def context_name(overrides: Iterable[str], packed_keys: Sequence[str] = GRID_KEYS) -> str:
    """The folder name for a job's other overrides, sorted: `dataset=swiss_roll,trainer.max_steps=300`.

    Names longer than `MAX_CONTEXT` become their first characters plus `~` and a hash of the full name, so
    the same overrides always map to the same folder."""
    kept = [_clean(o.lstrip("+~")) for o in context_overrides(overrides, packed_keys)]
    return _short(",".join(sorted(kept)))


def context_overrides(overrides: Iterable[str], packed_keys: Sequence[str] = GRID_KEYS) -> list[str]:
    """The overrides that name the job's context: neither per-member values nor neutral keys."""
    return [o for o in overrides
            if not packs(override_key(o), packed_keys) and not override_key(o).startswith(NEUTRAL_PREFIXES)]


def setting_keys(overrides: Iterable[str], packed_keys: Sequence[str]) -> list[str]:
    """The per-member keys (besides alpha and seed) that a job's overrides name: they are part of each cell's
    setting, whether the job gives one value (per-run mode) or a list (packed mode)."""
    return sorted({override_key(o) for o in overrides if packs(override_key(o), packed_keys)} - set(GRID_KEYS))


def plan_cells(root: Path, context: str, alphas: Sequence[float | None], seeds: Sequence[int],
               settings: Sequence[tuple[tuple[str, Any], ...]] = ((),)) -> list[Cell]:
    """The cells `settings x alphas x seeds`, in that order (seed varying fastest)."""
    base = Path(root) / context if context else Path(root)
    return [Cell(None if a is None else round_alpha(a), int(s),
                 (base / setting_name(st) if st else base) / cell_name(a, s), tuple(st))
            for st in settings for a in alphas for s in seeds]


def member_cells(root: Path, context: str, cfg: DictConfig, keys: Sequence[str] = ()) -> list[Cell]:
    """The cells of a job: every combination of its values of the setting `keys` (plus any other per-member key
    given as a list), alpha and seed. alpha is None for a schedule without `alpha.value`."""
    from mfsweep.config.build import member_keys  # torch and Hydra's instantiate: not for --help

    per_member = member_keys(cfg)
    keys = sorted(set(keys) | {k for k, vector in per_member.items() if k not in GRID_KEYS
                               and is_packed(k, OmegaConf.select(cfg, k), vector)})
    # A named key that no member may differ in (adaptive's alpha.estimate) is one value, whatever its type.
    values = [member_values(cfg, k, per_member.get(k, True)) for k in keys]
    settings = [tuple(zip(keys, combo)) for combo in itertools.product(*values)]
    return plan_cells(root, context, member_values(cfg, "alpha.value"), member_values(cfg, "seed"), settings)


def needs_training(cell: Cell, rerun: str) -> bool:
    """Whether `cell` must be trained: no readable record yet, or a recorded status that `sweep.rerun` asks to
    redo."""
    if rerun not in RERUN_CHOICES:
        raise ValueError(f"sweep.rerun must be one of {tuple(RERUN_CHOICES)}, got {rerun!r}")
    try:
        record = read_record(cell.dir)
    except UnreadableRecord:
        return True
    return record is None or record["status"] in RERUN_CHOICES[rerun]
