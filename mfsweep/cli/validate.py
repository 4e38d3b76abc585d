"""Check a composed config before anything trains; every error names the config key.

The alpha schedule and the tangent proxy check their own keys when built (`mfsweep.method`, a
`ConfigValueError`); this module checks the rest, and what no single component owns: that the proxy can mix in
the schedule's alphas, that the dataset has what they need (an exact posterior). Imports stay light (no torch, Lightning or FID code at module level): the sweeper imports this module in the
launching process, and a bad value should be reported in well under a second."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from mfsweep.cli.errors import ConfigError
from mfsweep.sweep.cells import (COMPONENT_GROUPS, GRID_KEYS, MEMBER_KEYS, RERUN_CHOICES, SHAPE_PREFIXES, is_packed,
                                 member_cells, member_keys, packs)

# Datasets whose posterior is known exactly (docs/method.md 3), so that tangent=oracle exists: Gaussian
# mixtures, and any vector set made finite with `dataset.finite_size` (its empirical posterior).
EXACT_POSTERIOR = ("dgmm",)


def as_list(value: Any) -> list:
    return list(value) if isinstance(value, (list, tuple, ListConfig)) else [value]


def _get(cfg: DictConfig, key: str) -> Any:
    value = OmegaConf.select(cfg, key, default="__missing__")
    if value == "__missing__":
        raise ConfigError(key, "is missing")
    return value


def _number(cfg: DictConfig, key: str, *, low: float | None = None, high: float | None = None,
            low_open: bool = False, integer: bool = False) -> None:
    for value in as_list(_get(cfg, key)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not isinstance(value, int)):
            raise ConfigError(key, f"must be {'an integer' if integer else 'a number'}, got {value!r}")
        if low is not None and (value <= low if low_open else value < low):
            raise ConfigError(key, f"must be {'>' if low_open else '>='} {low}, got {value!r}")
        if high is not None and value > high:
            raise ConfigError(key, f"must be <= {high}, got {value!r}")


def _choice(cfg: DictConfig, key: str, choices: tuple[str, ...]) -> None:
    value = _get(cfg, key)
    for v in as_list(value) if key in MEMBER_KEYS else [value]:
        if v not in choices:
            raise ConfigError(key, f"must be one of {list(choices)}, got {v!r}")


def check_packed_keys(keys: Any) -> None:
    """`sweep.packed_keys` may name only per-member keys: those that change tensor shapes or the data cannot
    differ between the members of one process."""
    for key in as_list(keys):
        if str(key).startswith(SHAPE_PREFIXES):
            raise ConfigError("sweep.packed_keys", f"{key} changes tensor shapes or the data, so members of one "
                                                   "process cannot differ in it: sweep it as separate jobs "
                                                   "(leave it out of sweep.packed_keys)")
        if key not in MEMBER_KEYS and str(key).partition(".")[0] not in COMPONENT_GROUPS:
            raise ConfigError("sweep.packed_keys", f"{key!r} is not a per-member key; they are {list(MEMBER_KEYS)} "
                                                   f"and the component groups' keys ({', '.join(f'{g}.*' for g in COMPONENT_GROUPS)})")
    for key in GRID_KEYS:
        if not packs(key, [str(k) for k in as_list(keys)]):
            raise ConfigError("sweep.packed_keys", f"must include {key} (the grid axes), got {list(as_list(keys))}")


def _single(cfg: DictConfig, key: str) -> None:
    """A key that members of one process must share holds one value, not a list."""
    if isinstance(OmegaConf.select(cfg, key), ListConfig):
        raise ConfigError(key, "changes tensor shapes or the data, so it takes one value per process: sweep it "
                               "as separate jobs (-m with sweep.mode=packed still makes one job per value)")


def _betas(cfg: DictConfig) -> None:
    value = _get(cfg, "trainer.betas")
    for pair in (value if is_packed("trainer.betas", value) else [value]):
        if not isinstance(pair, (list, tuple, ListConfig)) or len(pair) != 2 or \
                not all(isinstance(b, (int, float)) and not isinstance(b, bool) and 0 <= b < 1 for b in pair):
            raise ConfigError("trainer.betas", f"must be a pair [beta1, beta2] in [0, 1), or a list of such pairs, "
                                               f"got {OmegaConf.to_container(pair) if isinstance(pair, ListConfig) else pair!r}")


def validate(cfg: DictConfig) -> None:
    """Raise ConfigError for the first invalid value (ranges, choices, incompatible combinations)."""
    _choice(cfg, "dataset.task", tuple(TASK_CHECKS))
    TASK_CHECKS[cfg.dataset.task](cfg)
    _validate_common(cfg)


def _validate_vector(cfg: DictConfig) -> None:
    """The 2-D sets and Gaussian mixtures: the stacked MLP."""
    from mfsweep.data import VECTOR_DATASETS

    for key in ("model.width", "model.depth", "trainer.batch_size", "dataset.dim", "dataset.name"):
        _single(cfg, key)
    _choice(cfg, "dataset.name", VECTOR_DATASETS)
    _choice(cfg, "model.name", ("mlp",))
    _choice(cfg, "trainer.compile", ("auto", True, False))
    for key in ("model.width", "model.depth", "dataset.dim", "eval.n_projections"):
        _number(cfg, key, low=0, low_open=True, integer=True)
    if OmegaConf.select(cfg, "dataset.finite_size") is not None:
        _number(cfg, "dataset.finite_size", low=0, low_open=True, integer=True)
        _number(cfg, "dataset.finite_seed", low=0, integer=True)
    if cfg.dataset.name == "dgmm":
        _number(cfg, "dataset.n_components", low=0, low_open=True, integer=True)
        _number(cfg, "dataset.scale", low=0.0, low_open=True)
        _number(cfg, "dataset.spread", low=0.0)
        _number(cfg, "dataset.means_seed", integer=True)
    elif cfg.dataset.dim != 2:
        raise ConfigError("dataset.dim", f"the 2-D set {cfg.dataset.name!r} has dim 2, got {cfg.dataset.dim!r}")


def _validate_common(cfg: DictConfig) -> None:
    from mfsweep.method.time import TIME_DISTRIBUTIONS

    _choice(cfg, "time.dist", TIME_DISTRIBUTIONS)
    _choice(cfg, "trainer.lr_schedule", ("constant", "cosine"))
    _number(cfg, "trainer.warmup_steps", low=0, integer=True)
    _betas(cfg)
    _choice(cfg, "sweep.rerun", tuple(RERUN_CHOICES))
    _choice(cfg, "sweep.mode", ("per_run", "packed"))
    check_packed_keys(_get(cfg, "sweep.packed_keys"))
    _choice(cfg, "logger.name", ("wandb", "csv", "none"))
    _number(cfg, "seed", low=0, integer=True)
    for key in ("trainer.max_steps", "trainer.batch_size", "trainer.log_every", "eval.n_samples", "eval.n_steps"):
        _number(cfg, key, low=0, low_open=True, integer=True)
    _number(cfg, "eval.every_n_samples", low=0, low_open=True, integer=True)
    for key in ("grad_var.every", "trainer.checkpoint_every", "eval.every"):
        _number(cfg, key, low=0, integer=True)
    _number(cfg, "grad_var.replicas", low=2, integer=True)
    _number(cfg, "grad_var.batch_size", low=0, low_open=True, integer=True)
    _number(cfg, "verdict.margin", low=0.0, low_open=True, high=1.0)
    for key in ("time.ratio", "trainer.ema_decay", "loss.offset"):
        _number(cfg, key, low=0.0, high=1.0)
    _number(cfg, "time.sigma", low=0.0, low_open=True)
    _number(cfg, "time.mu")
    _number(cfg, "trainer.lr", low=0.0, low_open=True)
    _number(cfg, "trainer.weight_decay", low=0.0)
    _number(cfg, "trainer.grad_clip", low=0.0)
    _number(cfg, "loss.adaptive_p", low=0.0)
    _number(cfg, "loss.adaptive_eps", low=0.0, low_open=True)
    _number(cfg, "loss.anchor_weight", low=0.0)
    _number(cfg, "eval.projection_seed", low=0, integer=True)
    _validate_diagnostics(cfg)
    _validate_components(cfg)


def _validate_components(cfg: DictConfig) -> None:
    """Build the job's schedule and proxy as its members will have them (each checks its own keys), then what
    they need from each other and from the dataset."""
    from mfsweep.method.component import ConfigValueError
    from mfsweep.sweep.components import member_proxy, member_schedule

    members = [c.values() for c in member_cells(Path(), "", cfg)]
    schedule, proxy = member_schedule(cfg, members), member_proxy(cfg, members)
    proxy.check_schedule(schedule)
    exact = f"a dataset with an exact posterior ({list(EXACT_POSTERIOR)}, or any set made finite with " \
            f"dataset.finite_size=N), but dataset.name is {cfg.dataset.name!r} with dataset.finite_size null"
    if proxy.requires.oracle and not has_exact_posterior(cfg):
        raise ConfigValueError(proxy.group, f"={proxy.name} needs {exact}")
    if schedule.requires.posterior and not has_exact_posterior(cfg):
        raise ConfigValueError(schedule.group, f"={schedule.name} with this estimate needs {exact}")


def has_exact_posterior(cfg: DictConfig) -> bool:
    """Whether the dataset's posterior is known exactly: a Gaussian mixture, or a finite set (whose empirical
    oracle is exact only because training draws from that same set)."""
    return cfg.dataset.name in EXACT_POSTERIOR or OmegaConf.select(cfg, "dataset.finite_size") is not None


def _validate_diagnostics(cfg: DictConfig) -> None:
    _number(cfg, "diagnostics.every", low=0, integer=True)
    for key in ("diagnostics.batch_size", "diagnostics.n_probes", "diagnostics.n_fluctuations"):
        _number(cfg, key, low=0, low_open=True, integer=True)
    _number(cfg, "diagnostics.bins", low=0.0, high=1.0)
    bins = as_list(cfg.diagnostics.bins)
    if len(bins) < 2 or bins[0] != 0 or bins[-1] != 1 or any(b <= a for a, b in zip(bins, bins[1:])):
        raise ConfigError("diagnostics.bins", f"must be increasing edges from 0.0 to 1.0 (bins of t - r), got {bins}")


def _validate_latent(cfg: DictConfig) -> None:
    """The latent DiT task: one cell per process, a DiT that fits the data, guidance, FID, DDP settings."""
    from mfsweep.data.images import IMAGE_DATASETS

    _choice(cfg, "dataset.name", IMAGE_DATASETS)
    if not str(_get(cfg, "model.name")).startswith("DiT"):
        raise ConfigError("model.name", f"the latent_dit task trains a DiT (e.g. model=dit_b_4), "
                                        f"got {cfg.model.name!r}")
    for key in ("model.depth", "model.hidden_size", "model.num_heads", "model.patch_size", "dataset.num_classes",
                "metrics.fid.batch_size", "trainer.num_nodes"):
        _number(cfg, key, low=0, low_open=True, integer=True)
    _number(cfg, "model.mlp_ratio", low=0.0, low_open=True)
    width = cfg.model.hidden_size
    if width % cfg.model.num_heads or width % 4:
        raise ConfigError("model.hidden_size", f"must be a multiple of 4 and of model.num_heads "
                                               f"({cfg.model.num_heads}), got {width}")
    for key, vector in member_keys(cfg).items():
        if is_packed(key, OmegaConf.select(cfg, key), vector):
            raise ConfigError(key, "latent_dit trains one cell per process: give one value and sweep with a per-run "
                                   "multirun (-m alpha.value=0.0,0.5)")
    _choice(cfg, "sweep.mode", ("per_run",))
    for key in ("guidance.label_dropout", "guidance.t_min", "guidance.t_max"):
        _number(cfg, key, low=0.0, high=1.0)
    if cfg.guidance.t_min > cfg.guidance.t_max:
        raise ConfigError("guidance.t_min", f"must be <= guidance.t_max ({cfg.guidance.t_max}), "
                                            f"got {cfg.guidance.t_min}")
    _number(cfg, "guidance.omega")
    _number(cfg, "guidance.mix")
    _choice(cfg, "trainer.precision", ("32-true", "bf16-mixed"))
    # Not ddp_spawn: its workers' history and records would stay in the spawned processes.
    _choice(cfg, "trainer.strategy", ("auto", "ddp"))
    if _get(cfg, "trainer.threads") is not None:
        _number(cfg, "trainer.threads", low=1, integer=True)
    for key in ("eval.fid_samples", "eval.every_n_samples"):  # a covariance needs two samples
        _number(cfg, key, low=2, integer=True)
    side = _latent_side(cfg)
    if side % cfg.model.patch_size:
        raise ConfigError("model.patch_size", f"must divide the sample size {side}, got {cfg.model.patch_size}")
    _validate_fid(cfg)


def _latent_side(cfg: DictConfig) -> int:
    """The side of one training sample: from the latent folder's meta.json, or `dataset.image_size`."""
    if cfg.dataset.name == "digits":
        _number(cfg, "dataset.image_size", low=8, integer=True)
        return cfg.dataset.image_size
    path = _get(cfg, "dataset.path")
    if path is None:
        raise ConfigError("dataset.path", "is not set: give the mfsweep-encode output folder "
                                          "(or set MFSWEEP_IMAGENET_LATENTS)")
    meta_path = Path(str(path)).expanduser() / "meta.json"
    if not meta_path.is_file():
        raise ConfigError("dataset.path", f"no mfsweep-encode output (meta.json) in {Path(str(path)).expanduser()}")
    meta = json.loads(meta_path.read_text())
    if not meta.get("complete"):
        raise ConfigError("dataset.path", f"the encoding in {meta_path.parent} is incomplete: re-run mfsweep-encode")
    if len(meta["classes"]) != cfg.dataset.num_classes:
        raise ConfigError("dataset.num_classes", f"{cfg.dataset.num_classes}, but {meta_path.parent} holds "
                                                 f"{len(meta['classes'])} classes")
    return int(meta["latent_shape"][-1])


def _validate_fid(cfg: DictConfig) -> None:
    from mfsweep.metrics.fid import INCEPTION_WEIGHTS_KEY, check_inception_weights

    _choice(cfg, "metrics.fid.features", ("inception", "classifier"))
    if cfg.metrics.fid.features == "inception":
        try:
            check_inception_weights(_get(cfg, INCEPTION_WEIGHTS_KEY))
        except ValueError as err:
            raise ConfigError(INCEPTION_WEIGHTS_KEY, str(err).removeprefix(f"{INCEPTION_WEIGHTS_KEY}: ")) from None
    elif cfg.dataset.name != "digits":
        raise ConfigError("metrics.fid.features", "the classifier features exist for dataset=digits only; "
                                                  "use inception")
    stats = _get(cfg, "metrics.fid.reference_stats")
    if stats is not None and not Path(str(stats)).expanduser().is_file():
        raise ConfigError("metrics.fid.reference_stats", f"file not found: {Path(str(stats)).expanduser()}")


# Each task's own checks, by `dataset.task`; the common ones run for every task.
TASK_CHECKS = {"toy": _validate_vector, "dgmm": _validate_vector, "latent_dit": _validate_latent}
