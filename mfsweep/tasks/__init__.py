"""Lightning tasks: the shared MeanFlow module and the thin task modules, by `dataset.task`.

Each task's module is imported only when that task runs: the latent DiT pulls in timm, diffusers and the FID
code (seconds of imports), which a 2-D run never needs."""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Mapping, Sequence

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from mfsweep.tasks.meanflow import MeanFlowModule

TASKS: dict[str, str] = {
    "toy": "mfsweep.tasks.vector:VectorTask",
    "dgmm": "mfsweep.tasks.vector:GaussianMixtureTask",
    "latent_dit": "mfsweep.tasks.latent:LatentDiTTask",
}


def task_class(name: str) -> type[MeanFlowModule]:
    if name not in TASKS:
        raise ValueError(f"dataset.task must be one of {sorted(TASKS)}, got {name!r}")
    module, cls = TASKS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def build_task(cfg: DictConfig, alphas: Sequence[float | None], seeds: Sequence[int],
               settings: Sequence[Mapping[str, Any]] | None = None, cls: type[MeanFlowModule] | None = None) -> Any:
    """The task of `cfg`'s `dataset.task` (or `cls`) for members `(alphas[i], seeds[i], settings[i])`, built
    from the arguments its config layer makes (`cls.arguments`, in `mfsweep.config.arguments`)."""
    cls = cls or task_class(cfg.dataset.task)
    return cls(**cls.arguments(cfg, alphas, seeds, settings))
