"""Check a composed config before anything trains; every error names the config key."""
from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from mfsweep.data import VECTOR_DATASETS
from mfsweep.method.time import TIME_DISTRIBUTIONS
from mfsweep.sweep.cells import RERUN_CHOICES
from mfsweep.tasks.meanflow import PROXIES

EXACT_POSTERIOR = ("dgmm",)


class ConfigError(ValueError):
    """A bad config value; the message starts with the key."""

    def __init__(self, key: str, message: str):
        super().__init__(f"config key '{key}': {message}")
        self.key = key


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
    if value not in choices:
        raise ConfigError(key, f"must be one of {list(choices)}, got {value!r}")


def validate(cfg: DictConfig) -> None:
    """Raise ConfigError for the first invalid value (ranges, choices, incompatible combinations)."""
    _choice(cfg, "dataset.task", tuple(TASK_CHECKS))
    TASK_CHECKS[cfg.dataset.task](cfg)
    _validate_common(cfg)


def _validate_vector(cfg: DictConfig) -> None:
    """The 2-D sets and Gaussian mixtures: the stacked MLP."""
    _choice(cfg, "dataset.name", VECTOR_DATASETS)
    _choice(cfg, "model.name", ("mlp",))
    for key in ("model.width", "model.depth", "dataset.dim", "eval.n_projections"):
        _number(cfg, key, low=0, low_open=True, integer=True)


def _validate_common(cfg: DictConfig) -> None:
    _choice(cfg, "tangent.name", PROXIES)
    _choice(cfg, "alpha.schedule", ("constant",))
    _choice(cfg, "time.dist", TIME_DISTRIBUTIONS)
    _choice(cfg, "sweep.rerun", tuple(RERUN_CHOICES))
    _choice(cfg, "sweep.mode", ("per_run", "packed"))
    _choice(cfg, "logger.name", ("wandb", "csv", "none"))
    _number(cfg, "alpha.value", low=0.0, high=1.0)
    _number(cfg, "seed", low=0, integer=True)
    for key in ("trainer.max_steps", "trainer.batch_size", "trainer.log_every", "eval.n_samples", "eval.n_steps"):
        _number(cfg, key, low=0, low_open=True, integer=True)
    _number(cfg, "eval.every_n_samples", low=0, low_open=True, integer=True)
    for key in ("grad_var.every", "trainer.checkpoint_every", "eval.every"):
        _number(cfg, key, low=0, integer=True)
    _number(cfg, "grad_var.replicas", low=2, integer=True)
    _number(cfg, "grad_var.batch_size", low=0, low_open=True, integer=True)
    for key in ("time.ratio", "trainer.ema_decay", "loss.offset"):
        _number(cfg, key, low=0.0, high=1.0)
    if cfg.tangent.name == "ema":
        _number(cfg, "tangent.ema_decay", low=0.0, high=1.0)
    _number(cfg, "time.sigma", low=0.0, low_open=True)
    _number(cfg, "time.mu")
    _number(cfg, "trainer.lr", low=0.0, low_open=True)
    _number(cfg, "trainer.weight_decay", low=0.0)
    _number(cfg, "trainer.grad_clip", low=0.0)
    _number(cfg, "loss.adaptive_p", low=0.0)
    _number(cfg, "loss.adaptive_eps", low=0.0, low_open=True)
    _number(cfg, "loss.anchor_weight", low=0.0)
    _number(cfg, "eval.projection_seed", low=0, integer=True)
    if cfg.tangent.name == "conditional" and any(a != 0 for a in as_list(cfg.alpha.value)):
        raise ConfigError(
            "alpha.value", "tangent=conditional has no proxy to mix in, so alpha must be 0; "
            "choose tangent=ema or tangent=oracle for alpha > 0",
        )
    if cfg.tangent.name == "oracle" and cfg.dataset.name not in EXACT_POSTERIOR:
        raise ConfigError(
            "tangent.name", f"tangent=oracle needs a dataset with an exact posterior ({list(EXACT_POSTERIOR)}), "
            f"but dataset.name is {cfg.dataset.name!r}",
        )


# Each task's own checks, by `dataset.task`; the common ones run for every task.
TASK_CHECKS = {"toy": _validate_vector, "dgmm": _validate_vector}
